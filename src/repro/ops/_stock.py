"""The stock PyTorch callables, captured when ``repro.ops`` is first imported.

``repro.ops.patch()`` swaps some of these names in ``torch``,
``torch.nn.functional`` and ``torch.Tensor`` for the replacements. The
replacements themselves call only the aliases below, never ``torch.x`` or
``tensor.x`` for a patched name, so they neither recurse into themselves nor
change behaviour while a patch is active.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# torch.*
adaptive_max_pool1d_aten = torch.adaptive_max_pool1d
bincount = torch.bincount
cumsum = torch.cumsum
histc = torch.histc
index_select = torch.index_select
kthvalue = torch.kthvalue
median = torch.median
scatter_reduce = torch.scatter_reduce

# torch.nn.functional.*
adaptive_avg_pool1d = F.adaptive_avg_pool1d
adaptive_avg_pool2d = F.adaptive_avg_pool2d
adaptive_avg_pool3d = F.adaptive_avg_pool3d
adaptive_max_pool1d_with_indices = F.adaptive_max_pool1d_with_indices
adaptive_max_pool2d_with_indices = F.adaptive_max_pool2d_with_indices
avg_pool3d = F.avg_pool3d
cross_entropy = F.cross_entropy
embedding_bag = F.embedding_bag
grid_sample = F.grid_sample
interpolate = F.interpolate
nll_loss = F.nll_loss
pad = F.pad
