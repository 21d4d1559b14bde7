"""What every stage of the demo recipe gets: its settings and run folder (``StageContext``), and
``fit_recipe``, which runs a training recipe of ``packages/training/recipes`` in a stage's folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .head_shape import srh_shape

REPLY_ALIGNMENTS = ("official", "words")
# group sizes dividing both the 25 Hz code rate and the 10-code BOS delay (whole slots for each)
GROUP_SIZES = (1, 5)
PRECISIONS = ("32-true", "bf16-mixed")
TOWER_TOKEN_TABLES = ("text_lm", "learnt")


def default_precision() -> str:
    """``"bf16-mixed"`` where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX: a demo step runs
    1.2-1.5x as fast), else ``"32-true"`` (emulated bfloat16 would be slower than float32)."""
    import torch

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16-mixed" if native else "32-true"


@dataclass
class DemoSettings:
    """Settings of a demo build (the defaults reproduce the shipped model).

    seed: every seeded choice (held-out splits, initialisations).
    text_vocab_size: the BPE's size (merges plus 256 byte symbols; the special tokens come on top).
    pairs_per_file: speak only the first pairs of each corpus file (tests; None: all).
    tokenizer_steps / text_lm_steps: training steps of the speech tokenizer and of the text LLM.
    text_lm_size: "demo" (the recipe's sizes) or "tiny" (tests).
    knowledge_per_content: phrasings of each content item the text LLM learns (``corpus.knowledge_pairs``).
    text_lm_skills: the text LLM also learns tool calls and copying a sentence under the ASR instruction
        (``text_stages.text_lm_pairs``), as a pretrained LLM could before it hears speech (without it the
        model's tool calls were never well formed: runs/demo6 against runs/demo7).
    text_lm_buckets: length buckets of the text LLM's batches (``data.num_buckets``; the tool calls'
        ~450-token system prompt padded 28 % of a batch's tokens at 8 buckets, 13 % at 40).
    text_lm_copies_from_start: ``text_lm`` trains on the ``text_lm_copies`` copy pairs from its first
        step, instead of (or before) the ``text_lm_copy`` stage continuing it with them. Off: in 10000
        steps (40 buckets, 2188 s) it copied 55 % of the held-out sentences but answered 70 % of the
        held-out phrasings against 84 % for the two stages (``text_copy_2026-12-05_merged10000.json``).
    text_lm_copy_steps / text_lm_copies / text_lm_copy_lr: the ``text_lm_copy`` stage: the text LLM
        continued for that many steps on its pairs plus that many copy pairs of spliced sentences
        (``text_stages.text_lm_pairs``), so that it copies any sentence, as transcription needs (the
        ``text_lm`` skills alone copy 29 % of the 94 held-out transcription sentences word for word
        and 98 % of the training ones: they were learnt by heart; 43 % after 5000 steps), at that peak
        learning rate (0 steps: the text LLM as it is). The whole model from it, n = 200: S2T 50.0 %
        against 35.5 %, S2S 26.5 % against 21.5 % (``eval_2026-12-05_copy_llm_limit50.json``).
    text_lm_copy_tools: the ``text_lm_copy`` stage also learns every tool content (held-out ones included,
        as it knows every fact) in every training phrasing, that many times over (``text_lm_pairs``'s
        ``tool_repeats``; 0: only its ``knowledge_per_content`` pairs). With the 129 tool pairs alone (1 %
        of its pairs) the copy-trained LLM wrote the right call for 7 of 19 of its own training requests
        (the format always, the city or the minutes mostly not: "Check the weather in Madrid" -> Chicago).
        At 6 (2031 of 24282 pairs, a copy step 0.25 s against 0.195) written held-out requests came out
        right 83 % against 56 % (phrasings) and 59 % against 35 % (contents), spoken ones 4 of 35 against
        2 (``text_tool_calls_2026-12-06.json``, ``eval_2026-12-06_copy_tools6_limit50.json``).
    text_lm_copy_practice: the ``text_lm_copy`` stage also learns each compare, fact and instruction item
        in that many practice phrasings of each kind (``practice``: more templates, and lead-ins and tails
        around them; 0: none), so that the LLM reads phrasings it never met (``docs/demo_model.md``).
    spoken_practice: practice questions of the training contents spoken in the training voices
        (``practice_speech``) and answered in text in the training conversations: the listening fit and
        Core-Cocktail hear new wordings too (0: none; 3000: held-out S2T 59.0 % against 60.0 %, phrasings
        73 against 51 %, contents 54 against 63 %: ``eval_2026-12-06_spoken_practice3000_limit50.json``).
    spoken_practice_voices: the practice questions are also spoken in that many more voices
        (``speech_stages.PRACTICE_VOICES``: neither training nor held-out voices; 0: the training ones only;
        10 with 3000 questions: the listening fit's S2T of known questions in held-out voices 60 vs 56 %).
    audio_encoder_steps: CTC training steps of the continuous audio tower (the Whisper stand-in; 12000
        with the spliced sentences: held-out token error 27.0 % at 6000, 24.3 % at 12000).
    audio_encoder_width: the towers' ``d_model`` (``model_stages.demo_audio``; held-out 5 Hz token error
        of the continuous tower at 12000 steps: 24.3 % at 128, 20.6 % at 256, which trains 1.6x slower).
    audio_encoder_spliced: spliced training sentences the tower also hears (``spliced_speech``: the
        training words in new orders, against learning the training sentences by heart; 0: none).
    audio_encoder_words: > 0: each spliced sentence also says three of this many most common English words
        (``english_words``: wordfreq's list, not the corpus's), so that the tower, the stand-in for
        Whisper, hears words no training sentence has (a held-out phrasing's "when" was heard as
        "again"); 0: the training words only. At 700 it heard none of them in the held-out questions
        (``docs/experiments/demo_model/README.md``, "Common English words for the tower").
    listening_voices: the listening path also hears the training questions in that many more voices
        (``speech_stages.LISTENING_VOICES``: 270 other variants of the training accents and New York's,
        never a held-out voice, accent or variant; 0: none), each question ``listening_voice_rounds``
        times in a voice drawn for it: the tower trains on them (and its spliced sentences are spoken in
        those voices too) and the listening fit answers them. The listening fit answered its own training
        questions 98.5 % of the time in the training voices and 58.5 % in the held-out ones
        (``docs/experiments/demo_model/README.md``, "what the voices cost").
    tower_token_table: what the ``audio_encoder`` stage's 5 Hz token CTC reads the groups against:
        "text_lm" (the text LLM's input embeddings: the stage waits for ``text_lm``) or "learnt" (a table of
        its own over the text tokenizer's tokens: the stage starts beside ``text_lm``, and ``tower_match``,
        which must then have steps, moves the groups into the LLM's space).
    tower_match_steps / tower_match_weight / tower_match_logit_scale / tower_match_lr: the ``tower_match``
        stage's fine-tuning of the tower with the embedding match (``llm.audio_encoder``; 0 steps: the
        tower as it is), its weight, the token CTC's logit scale at the start and the peak learning rate.
    listening_steps / listening_lr: pre-alignment's first fit: the listening path (tower, adapter) taught,
        the text LLM frozen, to make spoken questions read as written ones (0: none; held-out S2T 23.8 %
        at 1200 steps, 25.6 % at 2400).
    listening_transcripts: the listening fit also transcribes: the conversations' transcription rows and
        the tower's spliced sentences (``model_stages.write_listening_rows``). Off: held-out S2T of the
        listening model 9 % with them against 39 % without (copy-trained LLM; n = 100).
    pre_alignment_steps / pre_alignment_lr: steps and peak learning rate of pre-alignment's speech-output
        fit (the SRH starts from scratch here, hence 10x the recipe's 1e-4).
    speech_embedding_std: the initial scale of the speech-token table (``build_model``'s
        ``speech_embedding_std``: at the config's 0.02 the SRH learnt to ignore its previous tokens).
    srh_text_scale: the SRH reads ``h + srh_text_scale * E_text`` (``audio_config.srh_text_scale``,
        official 1.0; the text LLM's embeddings are ~30x shorter than its hidden states). With
        ``reply_alignment="words"`` at 20 a new head says the word its slot names: free-running, 45 % of
        held-out replies heard word for word against 0 % in the official layout at 1.0
        (``tools/experiments/srh_refit.py``).
    srh_width / srh_layers: the SRH decoder's width (a multiple of 64: heads of 32) and layers
        (``head_shape.demo_srh``; the speech-token table is the LLM's width whatever the head's). A new
        head trained 2000 steps alone on the shipped 128 x 3 model: held-out S2S heard 46.5 % at 256 x 4
        against 43.0 % at 128 x 3 (arithmetic 60 against 46 %; 18 phrasings up, 12 down; the shipped
        head 40.5 %: ``docs/experiments/demo_model/README.md``, "A wider speech head"); RTF 0.23 against
        0.19, 2.6 M more parameters.
    cocktail_stage1_steps / cocktail_stage2_steps / cocktail_alpha: Core-Cocktail's two stages and its
        merge weight (1.0: plain fine-tuning, no merge).
    cocktail_lr: stage 1's peak learning rate (stage 2 runs at a tenth; the recipe's 1e-4 suits a
        pretrained 8B, a small LLM trained from scratch moves at more).
    cocktail_voice_questions: Core-Cocktail also trains on the training questions in the more voices of
        ``listening_voices`` answered in text (nothing when that is 0), not only the listening fit
        (held-out S2T 64.5 % against 59.0 %: ``eval_2026-12-06_cocktail_voice_questions_limit50.json``).
    cocktail_text_pairs: Core-Cocktail also trains on that many of the text LLM's own question-answering
        training pairs, written and answered in text under the text prompt (``finetune_stages.replayed_text``:
        the knowledge the merge is to keep, rehearsed; 0: none). Measured on one pre-aligned model: 2000
        pairs kept no more of the text knowledge (all held-out phrasings 91.4 % either way, base 93.8 %)
        and cost 4 S2T points (64.5 -> 60.5 %); with ``cocktail_alpha`` 0.3 as well 92.3 % and 58.0 %
        (``docs/experiments/demo_model/README.md``, "Rehearsing the text LLM's pairs in Core-Cocktail").
    dpo_pairs / dpo_steps / dpo_lr: preference pairs drawn, steps and learning rate of DPO.
    speech_polish_steps / speech_polish_lr: the ``dpo`` stage then runs pre-alignment's speaking fit (SRH
        and speech grouping; LLM and listening frozen) that many more steps at that peak learning rate (0:
        none; ``finetune_stages.polish_speech``). On a model with ``cocktail_voice_questions``: held-out
        S2S heard 28.0 % without, 31.0 % after 800 steps, 33.5 % after 2000, S2T unchanged
        (``eval_2026-12-06_speech_polish2000_limit50.json``; the head shares Core-Cocktail's batches with
        text-only rows).
    hift_steps / flow_steps: generator steps of HiFT and steps of the flow (HiFT on the true mel of
        held-out answers, heard: 45 % after 1000 steps, 60 % after 1500 (n = 20); 69.5 % after 2000,
        81.0 % after 4000, 79.0 % after 6000 (n = 200); HiFT runs beside the critical path with --jobs 2,
        about 1.05 s a step alone on two threads).
    vocoder_size: "demo" (``DEMO_FLOW`` and ``DEMO_HIFT``) or "tiny" (the recipes' tiny sizes, tests).
    flow_inference_steps: the shipped flow's Euler steps (CosyVoice3: 10). Held-out answers through codes,
        flow and the 2000-step HiFT are heard 75 % at 10, 80 % at 5 and at 3 (n = 20,
        ``tools/experiments/vocoder_parts.py --flow-steps``), and the flow is half of a server's time.
    group_size: 25 Hz speech frames per LLM slot, k: 5 (the official 5 Hz LLM) or 1 (a 25 Hz LLM); the
        towers' token CTC and embedding match, the model (``audio_config.group_size``), the aligned reply
        text and every speech fit's data follow it (``tools/experiments/frame_rate.py`` builds the recipe
        at both).
    reply_alignment: where a spoken answer's text sits in its slots: "official" (one token per slot from
        the first, then ``<|sil|>``) or "words" (each word at the slot whose SRH conditioning predicts its
        first codes, ``<|sil|>`` between: ``reply_alignment.aligned_text``).
    plan_speech: the shipped folder's decoding default (``generation_config.json``; ``Pipeline``'s
        ``plan_speech``): a spoken reply says the text-only reply to the same question, each word placed
        by the model. Held-out, 25 per task: S2S heard 22 % planned against 12 % free, its text 44 %
        against 21 % (``eval_2026-12-05_words_text20_planned_limit25.json``).
    speech_timing: the package also holds a table of the slots of a planned reply's words, fitted on the
        training replies (``package_stage.fit_speech_timing``; ``reply_alignment="words"``), and the spoken
        pass writes each word there instead of placing it itself. Held-out S2S heard 40.5 % against 33.5 %
        with the same model (``eval_2026-12-06_speech_timing_floor_limit50.json``).
    llm_precision / tower_precision / vocoder_precision: Lightning's ``trainer.precision`` ("32-true" or
        "bf16-mixed": weights and optimizer in float32, matrix products and convolutions in bfloat16
        autocast) of the language-model stages (``text_lm``, ``text_lm_copy``, ``pre_alignment``,
        ``core_cocktail``, ``dpo``), of the tower's (``audio_encoder``, ``tower_match``) and of the
        vocoder's (``vocoder_hift``, ``vocoder_flow``; the speech tokenizer, whose codes every speech stage
        learns, trains in float32). A step under bf16 autocast runs
        1.2-1.5x as fast as in float32 on this machine's AMX (``tools/bench/precision.py``,
        ``docs/training.md``); the tower trained so hears as well, and the text LLM trained in bf16
        answered 71.2 % of its held-out phrasings, between two float32 runs' 78.6 and 66.8 % (run-to-run
        spread, not precision). The tower and language-model stages default to ``default_precision()``
        (bf16 only where the CPU has it natively), and since 2026-12-07 so do the vocoder stages: trained
        in bf16 on the reproduction build (HiFT 4362 s against 4749, flow 1642 against 1825 on one
        thread), the vocoder renders the reference codes of 200 held-out answers so that pocketsphinx hears
        77.0 % of their keys against 71.0 % for the float32 pair (``tools/experiments/vocoder_parts.py``,
        ``vocoder_parts_2026-12-07_*.json``).
    compile_llm: the language-model fits of many steps (``text_lm``, ``text_lm_copy``, ``pre_alignment``'s
        two fits and the speech polish, ``core_cocktail``; not DPO's 60 steps) run their decoders through
        ``torch.compile`` (the recipe's ``compile: true``): text LLM steps 1.5x, speech LLM steps
        1.25-1.35x as fast on two cores, after about a minute of compiling per fit
        (``tools/bench/compiled_training.py``). How a stage computes, not what it learns: products made
        either way are restored alike."""

    seed: int = 0
    text_vocab_size: int = 1024
    pairs_per_file: int | None = None
    tokenizer_steps: int = 2000
    text_lm_steps: int = 9000
    text_lm_size: str = "demo"
    knowledge_per_content: int = 3
    text_lm_skills: bool = True
    text_lm_buckets: int = 8
    text_lm_copies_from_start: bool = False
    text_lm_copy_steps: int = 5000
    text_lm_copies: int = 12000
    text_lm_copy_lr: float = 1e-3
    text_lm_copy_tools: int = 6
    text_lm_copy_practice: int = 2
    spoken_practice: int = 0
    spoken_practice_voices: int = 0
    audio_encoder_steps: int = 12000
    audio_encoder_spliced: int = 6000
    audio_encoder_words: int = 0
    listening_voices: int = 270
    listening_voice_rounds: int = 2
    audio_encoder_width: int = 256
    tower_token_table: str = "text_lm"
    tower_match_steps: int = 4000
    tower_match_weight: float = 1.0
    tower_match_logit_scale: float = 20.0
    tower_match_lr: float = 5e-4
    listening_steps: int = 2400
    listening_lr: float = 3e-4
    listening_transcripts: bool = False
    pre_alignment_steps: int = 400
    pre_alignment_lr: float = 1e-3
    speech_embedding_std: float = 0.3
    srh_text_scale: float = 20.0
    srh_width: int = 256
    srh_layers: int = 4
    cocktail_stage1_steps: int = 800
    cocktail_stage2_steps: int = 300
    cocktail_alpha: float = 0.5
    cocktail_lr: float = 5e-4
    cocktail_voice_questions: bool = True
    cocktail_text_pairs: int = 0
    dpo_pairs: int = 600
    dpo_steps: int = 60
    dpo_lr: float = 5e-6
    speech_polish_steps: int = 2000
    speech_polish_lr: float = 3e-4
    hift_steps: int = 4000
    flow_steps: int = 4000
    vocoder_size: str = "demo"
    flow_inference_steps: int = 5
    group_size: int = 5
    reply_alignment: str = "words"
    plan_speech: bool = True
    speech_timing: bool = True
    llm_precision: str = field(default_factory=default_precision)
    tower_precision: str = field(default_factory=default_precision)
    vocoder_precision: str = field(default_factory=default_precision)
    compile_llm: bool = True

    def __post_init__(self) -> None:
        for name in ("llm_precision", "tower_precision", "vocoder_precision"):
            if getattr(self, name) not in PRECISIONS:
                raise ValueError(f"{name} must be one of {list(PRECISIONS)}, got {getattr(self, name)!r}")
        if self.flow_inference_steps < 1:
            raise ValueError(f"flow_inference_steps must be >= 1, got {self.flow_inference_steps}")
        if self.group_size not in GROUP_SIZES:
            raise ValueError(f"group_size must be one of {list(GROUP_SIZES)}, got {self.group_size!r}")
        srh_shape(self.srh_width, self.srh_layers)
        if self.tower_token_table not in TOWER_TOKEN_TABLES:
            allowed = list(TOWER_TOKEN_TABLES)
            raise ValueError(f"tower_token_table must be one of {allowed}, got {self.tower_token_table!r}")
        if self.tower_token_table == "learnt" and self.tower_match_steps == 0:
            raise ValueError(
                "tower_token_table='learnt' needs tower_match_steps > 0: only tower_match puts the tower's "
                "groups into the text LLM's space"
            )
        if self.reply_alignment not in REPLY_ALIGNMENTS:
            allowed = list(REPLY_ALIGNMENTS)
            raise ValueError(f"reply_alignment must be one of {allowed}, got {self.reply_alignment!r}")


def spoken_data(processor: Path, settings: DemoSettings) -> list[str]:
    """The data overrides of a speech fit: the ``processor`` folder (the text tokenizer's) at the recipe's
    ``group_size`` (the exported model folder's processor then carries it too)."""
    return [f"data.processor={processor}", f"data.group_size={settings.group_size}"]


def llm_fit(settings: DemoSettings) -> dict[str, Any]:
    """``fit_recipe``'s compute arguments for a language-model fit of many steps: ``llm_precision`` and
    ``compile_llm``."""
    return {"precision": settings.llm_precision, "compiled": settings.compile_llm}


class StageContext(Protocol):
    """The run a stage belongs to (``build.DemoBuild``)."""

    settings: DemoSettings
    stages: Mapping[str, Any]  # the recipe: name -> ``build.DemoStage`` (its ``needs``)

    def folder(self, stage: str) -> Path: ...

    def needs(self, stage: str) -> tuple[str, ...]: ...

    def require(self, stage: str, by: str) -> Path: ...

    def record(self, stage: str) -> dict[str, Any]: ...


RECIPES = Path(__file__).resolve().parents[4] / "recipes"  # packages/training/recipes


def fit_recipe(
    recipe: str,
    run_dir: Path,
    overrides: Sequence[str],
    extra: dict | None = None,
    product: Path | None = None,
    precision: str | None = None,
    compiled: bool = False,
) -> None:
    """``funaudiochat-train fit`` of ``recipes/<recipe>.yaml`` in ``run_dir`` with dotted ``overrides`` and
    the sections of ``extra`` merged on top (written to ``run_dir/demo.yaml``: nested values such as a
    model spec), resuming from its newest checkpoint when it has one. Nothing is trained when ``product``
    (the file or folder the fit exports, written atomically) exists already: an earlier fit made it, or
    it was restored from a saved build (``products``). ``precision``: ``trainer.precision`` (None: the
    recipe's); ``compiled``: the stage's ``compile_targets`` run through ``torch.compile`` (``compile=true``).

    Raises:
        RuntimeError: the fit ended without ``product`` (it resumed a checkpoint that had run every step)."""
    import yaml

    from ..cli import fit

    if product is not None and product.exists():
        print(f"{product} exists: {recipe} is trained already", flush=True)
        return

    configs = [RECIPES / f"{recipe}.yaml"]
    if extra:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "demo.yaml").write_text(yaml.safe_dump(extra, sort_keys=False), encoding="utf-8")
        configs.append(run_dir / "demo.yaml")
    overrides = [f"trainer.default_root_dir={run_dir}", *overrides]
    if precision is not None:
        overrides.append(f"trainer.precision={precision}")
    if compiled:
        overrides.append("compile=true")
    checkpoints = sorted(run_dir.rglob("*.ckpt"), key=lambda path: path.stat().st_mtime)
    if checkpoints:  # the newest (a new run logs into a new version folder, so "last" would not find it)
        overrides.append(f"ckpt_path={checkpoints[-1]}")
    fit(configs, overrides)
    if product is not None and not product.exists():
        # Lightning resumed a checkpoint at its last step: nothing trained, so nothing was exported
        resumed = f" (it resumed {checkpoints[-1]}, which had run every step)" if checkpoints else ""
        raise RuntimeError(
            f"the {recipe} fit in {run_dir} exported no {product}{resumed}: delete {run_dir} to train it "
            "again, or give it more steps to go on from there"
        )
