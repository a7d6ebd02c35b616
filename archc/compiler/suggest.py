"""Did-you-mean that never steers to a different computation without saying so.

A close spelling is not a close meaning: `hardtanh` is one edit-heavy step from `tanh`, `selu` one
letter from `relu`, and following such a hint builds a model that loads the same weights and
computes something else. So a name is suggested plainly only when it is a typo (a small edit, and
not itself the name of another PyTorch function); otherwise the closest name is offered as what it
is, "a different function". PyTorch's spellings of ops and arguments (`Conv2d`, `BatchNorm2d`,
`kernel_size`, `out_channels`) map to archc's names through one table.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from archc.errors import did_you_mean

# PyTorch layers and functions (torch.nn / torch.nn.functional names, lower case, no 1d/2d/3d):
# an unknown op spelled like one of these is that function, never a typo of a similar archc op.
PYTORCH_FUNCTIONS = frozenset(
    {
        "elu",
        "selu",
        "celu",
        "gelu",
        "prelu",
        "rrelu",
        "relu",
        "relu6",
        "leakyrelu",
        "leaky_relu",
        "glu",
        "hardtanh",
        "hardshrink",
        "softshrink",
        "tanhshrink",
        "softplus",
        "softsign",
        "logsigmoid",
        "softmin",
        "logsoftmax",
        "log_softmax",
        "softmax2d",
        "threshold",
        "hardswish",
        "hardsigmoid",
        "mish",
        "silu",
        "sigmoid",
        "tanh",
        "softmax",
        "multiheadattention",
        "embedding",
        "embeddingbag",
        "lstm",
        "gru",
        "rnn",
        "transformer",
        "transformerencoder",
        "transformerencoderlayer",
        "pixelshuffle",
        "pixel_shuffle",
        "pixelunshuffle",
        "instancenorm",
        "instance_norm",
        "localresponsenorm",
        "alphadropout",
        "featurealphadropout",
        "fold",
        "unfold",
        "zeropad",
        "constantpad",
        "reflectionpad",
        "replicationpad",
        "circularpad",
        "bilinear",
        "cosinesimilarity",
        "pairwisedistance",
        "lppool",
        "fractionalmaxpool",
        "maxunpool",
        "adaptivelogsoftmaxwithloss",
        "channelshuffle",
        "upsamplingnearest",
        "upsamplingbilinear",
        "syncbatchnorm",
        "lazylinear",
        "lazyconv",
    }
)

# Names from PyTorch, torchvision and timm for a computation archc writes otherwise -> how, and the
# ops that says to use (tests/test_errors.py checks they are registered). Looked up before any
# spelling match, which would offer a similar name that computes something else.
WRITTEN_AS: dict[str, tuple[str, tuple[str, ...]]] = {
    "splitwithsizes": (
        "archc's 'split' takes the sizes: 'split: {sizes: [...], dim: ...}'",
        ("split",),
    ),
    "tensorsplit": (
        "PyTorch has it, archc does not: 'split' takes the pieces' sizes, not the cut indices",
        ("split",),
    ),
    "unbind": (
        "PyTorch has it, archc does not: 'chunk' cuts one piece per position (each keeps the "
        "dimension), 'select' takes one position without it",
        ("chunk", "select"),
    ),
    "hsplit": (
        "PyTorch has it, archc does not: 'split' or 'chunk' with the dim you mean",
        ("split", "chunk"),
    ),
    "vsplit": (
        "PyTorch has it, archc does not: 'split' or 'chunk' with the dim you mean",
        ("split", "chunk"),
    ),
    "windowpartition": (
        "'shifted_window_attention' cuts Swin's windows itself; 'partition' cuts MaxViT's "
        "windows or grid into token groups",
        ("shifted_window_attention", "partition"),
    ),
    "windowreverse": (
        "'unpartition' rebuilds the map from token groups (MaxViT); Swin's window attention "
        "returns the map itself",
        ("unpartition",),
    ),
    "gridattention": (
        "MaxViT's grid attention is 'partition: {size: ..., mode: grid}', then "
        "'relative_attention', then 'unpartition'",
        ("partition", "relative_attention", "unpartition"),
    ),
    "blockattention": (
        "MaxViT's block attention is 'partition: {size: ...}', then 'relative_attention', then "
        "'unpartition'",
        ("partition", "relative_attention", "unpartition"),
    ),
    "attention": (
        "archc has 'self_attention' (ViT, nn.MultiheadAttention), 'shifted_window_attention' "
        "(Swin) and 'relative_attention' (MaxViT): name the one you mean",
        ("self_attention", "shifted_window_attention", "relative_attention"),
    ),
    "channelslast": ("an H×W×C map is 'permute: [1, 2, 0]' of a C×H×W one", ("permute",)),
    "tochannelslast": ("an H×W×C map is 'permute: [1, 2, 0]' of a C×H×W one", ("permute",)),
    "truncnormal": (
        "trunc_normal is an init: 'parameter: {shape: [...], init: trunc_normal, std: 0.02}', or "
        "a scheme under 'init:'",
        ("parameter",),
    ),
}

# PyTorch constructor arguments -> archc's name for the same thing.
PYTORCH_ARGS: dict[str, str] = {
    "out_channels": "out",
    "out_features": "out",
    "kernel_size": "kernel",
    "num_groups": "groups",
    "scale_factor": "scale",
    "output_size": "output",
    "start_dim": "start",
    "end_dim": "end",
}
# PyTorch constructor arguments archc works out itself -> why they are never written.
DERIVED_ARGS: dict[str, str] = {
    "in_channels": "archc infers in_channels from the input: leave it out",
    "in_features": "archc infers in_features from the input: leave it out",
    "num_features": "archc infers num_features from the input: leave it out",
    "num_channels": "archc infers num_channels from the input: leave it out",
    "normalized_shape": "archc takes normalized_shape from the input (see 'dims'): leave it out",
    "inplace": "archc runs a layer in place itself when that is safe: leave it out",
}


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment): a swapped pair of letters is one edit."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def is_typo(name: str, candidate: str) -> bool:
    """A slip of the fingers, not another name: one edit in a short name, two in a longer one, the
    first letter right, and no prefix or suffix added or dropped (`un`flatten, dropout`2d`, relu`6`,
    `hard`swish name other functions). Names of three letters or fewer are too short to guess."""
    a, b = name.lower(), candidate.lower()
    if len(b) <= 3 or a[:1] != b[:1]:
        return False
    short, long_ = sorted((a, b), key=len)
    if short != long_ and short in long_:
        affix = long_.replace(short, "", 1)
        if len(affix) >= 2 or affix.isdigit():
            return False
    return edit_distance(a, b) <= (1 if len(b) <= 6 else 2)


# Where PyTorch's 1d/2d/3d suffix changes what a layer computes (Dropout2d zeroes whole channels),
# rather than only the rank archc reads from the input (torchvision's
# LayerNorm2d normalises channels).
RANK_SUFFIX_MATTERS = frozenset({"dropout", "alphadropout", "featurealphadropout", "layernorm"})


def _pytorch_key(name: str) -> str:
    """'BatchNorm2d' -> 'batchnorm', 'Conv2d' -> 'conv', 'max_pool2d' ->
    'max_pool'; 'Dropout2d' stays."""
    stripped = re.sub(r"(?<=[a-z])[123]d$", "", name.lower())
    return name.lower() if stripped.replace("_", "") in RANK_SUFFIX_MATTERS else stripped


def suggest_op(name: str, ops: Iterable[str], others: Iterable[str] = ()) -> str:
    """The hint after "unknown op ... 'name'": a plain did-you-mean only when meaning is kept.

    `ops` are op names and aliases (functions); `others` are block and
    key names (suggested as typos).
    """
    op_names = list(ops)
    concept = WRITTEN_AS.get(_pytorch_key(name).replace("_", ""))
    if concept is not None:
        return f" ({concept[0]})"
    lowered = {o.lower().replace("_", ""): o for o in reversed(op_names)}
    lowered.update({o.lower(): o for o in op_names})
    key = _pytorch_key(name)
    for probe in (name.lower(), key, key.replace("_", "")):
        if probe in lowered and lowered[probe] != name:
            return f" (did you mean '{lowered[probe]}'? op names are lower case)"
    matches = difflib.get_close_matches(name, [*op_names, *others], n=1, cutoff=0.6)
    is_pytorch = key in PYTORCH_FUNCTIONS or key.replace("_", "") in PYTORCH_FUNCTIONS
    if not matches:
        return " (PyTorch has it, archc does not: a plugin can add it)" if is_pytorch else ""
    best = matches[0]
    if best not in op_names:  # a block or a meta key: a name, not a function
        return f" (did you mean '{best}'?)"
    if is_pytorch:
        return (
            f" (PyTorch has it, archc does not; the closest op, '{best}', is a different function)"
        )
    if is_typo(name, best):
        return f" (did you mean '{best}'?)"
    typed, closest = name.lower(), best.lower()
    if (closest in typed and not typed.startswith(closest)) or typed in closest:
        # hard-tanh, un-flatten: a variant
        return f" (the closest op, '{best}', is a different function)"
    return f" (the closest op is '{best}': not a spelling slip, so check it computes what you mean)"


def suggest_argument(name: str, op: str, fields: Iterable[str]) -> str:
    """The hint after "unknown argument 'name' for op": PyTorch's names first, then typos."""
    names = list(fields)
    if name in DERIVED_ARGS:
        return f" ({DERIVED_ARGS[name]})"
    if PYTORCH_ARGS.get(name) in names:
        return f" (PyTorch's '{name}' is '{PYTORCH_ARGS[name]}' here)"
    return did_you_mean(name, names)


__all__ = [
    "DERIVED_ARGS",
    "PYTORCH_ARGS",
    "PYTORCH_FUNCTIONS",
    "WRITTEN_AS",
    "did_you_mean",
    "edit_distance",
    "is_typo",
    "suggest_argument",
    "suggest_op",
]
