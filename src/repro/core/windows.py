"""Ordered data as a map-style dataset: windows of one long token sequence, for language models.

A map-style dataset is what makes a loader's order a function of (seed, epoch, index): worker-count
invariant, and resumable mid-epoch without replaying batches. :class:`TokenWindows` gives a token
sequence (a tensor, a numpy array, or an ``np.memmap`` of a file too large for memory) that shape:

- ``streams=None``: item ``i`` is the ``i``-th window of ``length`` tokens, as ``(x, y)`` with ``y``
  the next tokens. Shuffle them (a Transformer's training windows) or not.
- ``streams=B``: the sequence is cut into ``B`` contiguous streams and item ``c * B + s`` is window
  ``c`` of stream ``s``. An ordered loader (``shuffle=False``) with ``batch_size=B`` hands out window
  ``c`` of every stream as batch ``c``: truncated backpropagation through time, where a recurrent
  model carries its hidden state from one batch to the next. Under torchrun give each rank
  ``batch_size=B // world_size``: rank ``r`` then always gets the streams ``s = r, r + world_size,
  ...`` (the loader shards by interleaving), so its carried state stays its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class TokenWindows(Dataset):
    """Windows of ``length`` tokens of a 1-D token sequence, as ``(x, y)`` long tensors (see module doc)."""

    def __init__(self, tokens: Any, length: int, *, streams: int | None = None) -> None:
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.numpy()
        if getattr(tokens, "ndim", None) != 1:
            raise ValueError(
                f"TokenWindows(tokens=...): expected a 1-D sequence of token ids, got shape "
                f"{getattr(tokens, 'shape', '?')}"
            )
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"TokenWindows(length={length!r}): expected an int >= 1")
        if streams is not None and (not isinstance(streams, int) or streams < 1):
            raise ValueError(f"TokenWindows(streams={streams!r}): expected an int >= 1 or None")
        self.tokens, self.length, self.streams = tokens, length, streams
        # each stream holds this many tokens; a window needs length + 1 of them (y is x shifted)
        self.stream_len = len(tokens) // (streams or 1)
        self.windows_per_stream = (self.stream_len - 1) // length
        if self.windows_per_stream < 1:
            raise ValueError(
                f"TokenWindows: {len(tokens)} tokens are too few for one window of {length} + 1 "
                f"tokens per stream ({streams or 1} stream(s))"
            )

    def __len__(self) -> int:
        return self.windows_per_stream * (self.streams or 1)

    def start(self, index: int) -> int:
        """The position in the token sequence where item ``index``'s window starts."""
        if not 0 <= index < len(self):
            raise IndexError(f"TokenWindows index {index} out of range [0, {len(self)})")
        if self.streams is None:
            return index * self.length
        window, stream = divmod(index, self.streams)
        return stream * self.stream_len + window * self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        begin = self.start(index)
        chunk = torch.from_numpy(np.asarray(self.tokens[begin : begin + self.length + 1], np.int64))
        return chunk[:-1], chunk[1:]
