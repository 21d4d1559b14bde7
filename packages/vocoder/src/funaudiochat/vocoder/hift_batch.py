"""HiFT for streams at different positions in one batch (a server's sessions that started at different
times: ``Token2Wav`` keeps them in separate lockstep cohorts).

Past its first chunk a HiFT stream's state has the same shapes at every position: each convolution keeps a
fixed number of input frames (stride-1 convolutions: the kernel's span; the strided source convolutions
get whole multiples of their stride, 120 source frames per mel frame), the source branch runs a fixed
number of frames ahead of the main path, and the STFT and overlap-add buffers keep fixed remainders. Such
"steady" states that get the same number of new mel frames are joined row-wise, stepped as one batch with
each row's own sample position (the source noise), and split back. The others (a first chunk, the final
flush, an odd number of frames) step alone. Each row's samples equal its own step's, to float rounding.
"""

from __future__ import annotations

import torch

from .hift import HiFTGenerator, HiFTState


def step_together(hift: HiFTGenerator, mels: list[torch.Tensor], states: list[HiFTState], finalize: bool):
    """One step of several lockstep states: ``mels[i] [B_i, 80, n_i]`` for ``states[i]`` -> each state's
    waveform ``[B_i, m_i]``; the states are updated in place."""
    out: list[torch.Tensor | None] = [None] * len(states)
    groups: dict[tuple, list[int]] = {}
    for i, (mel, state) in enumerate(zip(mels, states, strict=True)):
        if finalize or mel.shape[2] == 0 or not _steady(state):
            out[i] = hift._step_lockstep(mel, state, finalize)
        else:
            groups.setdefault((mel.shape[2], _signature(state)), []).append(i)
    for members in groups.values():
        if len(members) == 1:
            i = members[0]
            out[i] = hift._step_lockstep(mels[i], states[i], finalize)
            continue
        waves = _step_joined(hift, [mels[i] for i in members], [states[i] for i in members])
        for i, wave in zip(members, waves, strict=True):
            out[i] = wave
    return out


def _steady(state: HiFTState) -> bool:
    return (
        state.source_samples > 0
        and state.main_frames > 0
        and state.istft_position >= 0
        and not state.finished
    )


def _signature(state: HiFTState) -> tuple:
    """What must be equal for states to be joined: their buffers' lengths, the noise, the overlap-add
    envelope."""
    contexts = tuple(t.shape[2] for t in state.context.values())
    pending = tuple(t.shape[2] for t in state.source_pending)
    envelope = tuple(state.ola_envelope.tolist())
    return contexts, pending, state.stft_input.shape[1], id(state.noise), envelope, state.phase.dtype


def _step_joined(
    hift: HiFTGenerator, mels: list[torch.Tensor], states: list[HiFTState]
) -> list[torch.Tensor]:
    first = states[0]
    joined = HiFTState(
        context={name: torch.cat([s.context[name] for s in states]) for name in first.context},
        phase=torch.cat([s.phase for s in states]),
        source_pending=[torch.cat(parts) for parts in zip(*(s.source_pending for s in states), strict=True)],
        stft_input=torch.cat([s.stft_input for s in states]),
        ola=torch.cat([s.ola for s in states]),
        noise=first.noise,
        ola_envelope=first.ola_envelope,
        istft_position=first.istft_position,
        source_samples=first.source_samples,
        main_frames=first.main_frames,
    )
    starts = [s.source_samples for s in states for _ in range(s.batch_size)]
    wave = hift._step_lockstep(torch.cat(mels), joined, False, starts=starts)
    sizes = [s.batch_size for s in states]
    # every state advanced as far as the joined one (the same frames), each from its own position
    samples = joined.source_samples - first.source_samples
    istft = joined.istft_position - first.istft_position
    frames = joined.main_frames - first.main_frames
    for state, rows in zip(states, _slices(sizes), strict=True):
        state.context = {name: t[rows] for name, t in joined.context.items()}
        state.phase, state.stft_input, state.ola = (
            joined.phase[rows],
            joined.stft_input[rows],
            joined.ola[rows],
        )
        state.source_pending = [t[rows] for t in joined.source_pending]
        state.ola_envelope = joined.ola_envelope
        state.source_samples += samples
        state.istft_position += istft
        state.main_frames += frames
    return list(torch.split(wave, sizes))


def _slices(sizes: list[int]) -> list[slice]:
    out, start = [], 0
    for size in sizes:
        out.append(slice(start, start + size))
        start += size
    return out
