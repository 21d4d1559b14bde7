"""The funaudiochat command: --help, tokenize in text and npy form, weights, and clear errors."""

import subprocess
import sys

import numpy as np
import pytest
from funaudiochat.chat.cli import main
from funaudiochat.tokenizer import SpeechTokenizer, SpeechTokenizerConfig, code_count, load_audio


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "funaudiochat.chat.cli", *args], capture_output=True, text=True
    )


def test_help_lists_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "tokenize" in result.stdout


def test_tokenize_prints_codes_and_says_it_is_random(speech_dir):
    wav = speech_dir / "utt1.wav"
    result = run_cli("tokenize", str(wav))
    assert result.returncode == 0, result.stderr
    assert "seeded tiny random tokenizer" in result.stderr
    codes = [int(c) for c in result.stdout.split()]
    assert len(codes) == code_count(load_audio(wav).shape[0])
    expected = SpeechTokenizer.random(seed=0).encode(load_audio(wav))[0].tolist()
    assert codes == expected


def test_tokenize_npy_with_weights(tmp_path, speech_dir, capsys):
    tok = SpeechTokenizer.random(
        SpeechTokenizerConfig(n_audio_state=64, n_audio_head=1, n_audio_layer=1), seed=5
    )
    weights = tmp_path / "tok.safetensors"
    tok.save_safetensors(weights)
    out = tmp_path / "codes.npy"
    wav = speech_dir / "utt2.wav"
    assert main(["tokenize", str(wav), "--format", "npy", "--out", str(out), "--weights", str(weights)]) == 0
    assert "random" not in capsys.readouterr().err
    saved = np.load(out)
    assert saved.dtype == np.int64
    assert saved.tolist() == tok.encode(load_audio(wav))[0].tolist()


def test_tokenize_several_files_to_a_directory(tmp_path, speech_dir):
    files = [str(speech_dir / "utt0.wav"), str(speech_dir / "utt3.wav")]
    assert main(["tokenize", *files, "--format", "npy", "--out", str(tmp_path / "codes")]) == 0
    assert sorted(p.name for p in (tmp_path / "codes").iterdir()) == ["utt0.codes.npy", "utt3.codes.npy"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["tokenize", "/nonexistent/q.wav"], "q.wav: file not found"),
        (["tokenize", "{wav}", "--weights", "/nonexistent/w.safetensors"], "weights file not found"),
        (["tokenize", "{wav}", "--max-seconds", "0.5"], "longer than the limit of 0.50 s"),
    ],
)
def test_tokenize_errors_are_clear(speech_dir, capsys, args, message):
    args = [a.format(wav=speech_dir / "utt0.wav") for a in args]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_vocode_writes_24khz_audio(tmp_path, capsys):
    import soundfile as sf

    codes = tmp_path / "codes.txt"
    codes.write_text("6561 6561 12 400 3000, 17 6562")
    out = tmp_path / "answer.wav"
    assert main(["vocode", str(codes), "--out", str(out)]) == 0
    assert "seeded tiny random vocoder" in capsys.readouterr().err
    wave, rate = sf.read(out)
    assert rate == 24000 and wave.shape == (4 * 960,)


def test_vocode_stream_writes_the_streamed_audio(tmp_path, capsys):
    import soundfile as sf

    codes = tmp_path / "codes.txt"
    codes.write_text(" ".join(str(i * 97 % 6561) for i in range(40)))
    out = tmp_path / "streamed.wav"
    assert main(["vocode", str(codes), "--out", str(out), "--stream", "--hop", "10"]) == 0
    err = capsys.readouterr().err
    assert "streamed 40 tokens in hops of 10" in err and "first audio after" in err
    wave, rate = sf.read(out)
    assert rate == 24000 and wave.shape == (40 * 960,)
    grown = tmp_path / "grown.wav"
    growing = ["--stream", "--hop", "5", "--hop-growth", "2"]
    assert main(["vocode", str(codes), "--out", str(grown), *growing]) == 0
    assert sf.read(grown)[0].shape == (40 * 960,)


@pytest.fixture(scope="module")
def tiny_trained_vocoder(tmp_path_factory):
    """``flow.safetensors`` and ``hift.safetensors`` of tiny models, written by the training stages' export
    (config in the metadata), and the ``Token2Wav`` those weights make when built with the tiny configs."""
    import torch
    from funaudiochat.training.vocoder import FlowMatchingModule, HiFTModule
    from funaudiochat.vocoder import CausalFlowMatching, FlowConfig, HiFTConfig, HiFTGenerator
    from funaudiochat.vocoder.token2wav import Token2Wav
    from safetensors.torch import load_file

    folder = tmp_path_factory.mktemp("tiny_vocoder")
    flow_file, hift_file = folder / "flow.safetensors", folder / "hift.safetensors"
    torch.manual_seed(0)
    FlowMatchingModule(flow={"preset": "tiny"}).export(str(flow_file))
    HiFTModule(hift={"preset": "tiny"}, discriminator={"preset": "tiny"}).export(str(hift_file))
    flow = CausalFlowMatching.from_pretrained(flow_file, FlowConfig.tiny())
    hift = HiFTGenerator.from_state_dict(load_file(hift_file), HiFTConfig.tiny())
    return flow_file, hift_file, Token2Wav(flow, hift)


def test_vocode_builds_the_sizes_stored_with_trained_weights(tmp_path, capsys, tiny_trained_vocoder):
    """Weights exported by the training stages carry their config: vocode builds the tiny models they hold
    (not the official size, which does not fit them) and writes the audio those models make."""
    import soundfile as sf

    flow_file, hift_file, expected_vocoder = tiny_trained_vocoder
    tokens = [i * 131 % 6561 for i in range(20)]
    codes = tmp_path / "codes.txt"
    codes.write_text(" ".join(map(str, tokens)))
    out = tmp_path / "trained.wav"
    weights = ["--flow", str(flow_file), "--hift", str(hift_file)]
    assert main(["vocode", str(codes), "--out", str(out), *weights]) == 0, capsys.readouterr().err
    assert "random" not in capsys.readouterr().err
    wave, rate = sf.read(out)
    expected = expected_vocoder.synthesize(tokens).numpy()
    assert rate == 24000 and wave.shape == expected.shape == (20 * 960,)
    np.testing.assert_allclose(wave, expected.clip(-1, 1), rtol=0, atol=2 / 32768)  # 16-bit PCM


def test_vocode_names_weights_given_for_the_other_model(tmp_path, capsys, tiny_trained_vocoder):
    flow_file, hift_file, _ = tiny_trained_vocoder
    codes = tmp_path / "codes.txt"
    codes.write_text("1 2 3")
    swapped = ["--flow", str(hift_file), "--hift", str(flow_file)]
    assert main(["vocode", str(codes), "--out", str(tmp_path / "a.wav"), *swapped]) == 2
    assert "holds funaudiochat-vocoder-hift weights, not funaudiochat-vocoder-flow" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content,args,message",
    [
        ("1 2 x", [], "tokens must be integers"),
        ("1 2 7000", [], "speech tokens must lie in 0..6560"),
        ("1 2 3", ["--speaker", "nobody"], "unknown speaker 'nobody'"),
        ("1 2 3", ["--flow", "f.safetensors"], "give both --flow and --hift"),
        ("1 2 3", ["--stream", "--hop", "0"], "--hop must be >= 1 token"),
        ("1 2 3", ["--stream", "--hop-growth", "0"], "--hop-growth must be >= 1"),
        ("1 2 3", ["--stream", "--hop-growth", "2", "--max-hop", "3"], "max_hop_tokens (3) must be >="),
    ],
)
def test_vocode_errors(tmp_path, capsys, content, args, message):
    codes = tmp_path / "codes.txt"
    codes.write_text(content)
    assert main(["vocode", str(codes), "--out", str(tmp_path / "a.wav"), *args]) == 2
    assert message in capsys.readouterr().err
