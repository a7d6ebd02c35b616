"""The one rule for layer, block and seq names (`archc check` and `archc build` both apply it).

A name becomes an attribute of an nn.Module (`model.layer1`, key `layer1.0.conv1.weight`), so it may
be anything `nn.Module.add_module` accepts that does not shadow an attribute the module already
has: `block`, `features`, `block1-0`, `if`, `None`, `ünïcode` are all fine. Generated code reaches
names that are not plain ASCII identifiers with `getattr(self, "block1-0")`, which TorchScript
accepts too. This module imports no torch (`archc check` never does): the reserved attributes are
listed here, and a test keeps the list equal to the installed torch's.
"""

from __future__ import annotations

import keyword

INPUT = "input"  # refers to a list's input in `from:`

# dir(nn.Sequential) | dir(nn.Module) | vars(nn.Sequential()), once torch.compile has patched
# nn.Module: every scope may be emitted as an nn.Sequential subclass, so its methods (append,
# pop...) are taken too.
MODULE_ATTRIBUTES = frozenset(
    {
        "T_destination",
        "___needs_generation_tag_patch",
        "_apply",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_buffers",
        "_call_impl",
        "_compiled_call_impl",
        "_forward_hooks",
        "_forward_hooks_always_called",
        "_forward_hooks_with_kwargs",
        "_forward_pre_hooks",
        "_forward_pre_hooks_with_kwargs",
        "_get_backward_hooks",
        "_get_backward_pre_hooks",
        "_get_item_by_idx",
        "_get_name",
        "_is_full_backward_hook",
        "_load_from_state_dict",
        "_load_state_dict_post_hooks",
        "_load_state_dict_pre_hooks",
        "_maybe_warn_non_full_backward_hook",
        "_modules",
        "_named_members",
        "_non_persistent_buffers_set",
        "_parameters",
        "_register_load_state_dict_pre_hook",
        "_register_state_dict_hook",
        "_replicate_for_data_parallel",
        "_save_to_state_dict",
        "_slow_forward",
        "_state_dict_hooks",
        "_state_dict_pre_hooks",
        "_version",
        "_wrapped_call_impl",
        "add_module",
        "append",
        "apply",
        "bfloat16",
        "buffers",
        "call_super_init",
        "children",
        "compile",
        "cpu",
        "cuda",
        "double",
        "dump_patches",
        "eval",
        "extend",
        "extra_repr",
        "float",
        "forward",
        "get_buffer",
        "get_extra_state",
        "get_parameter",
        "get_submodule",
        "half",
        "insert",
        "ipu",
        "load_state_dict",
        "modules",
        "mtia",
        "named_buffers",
        "named_children",
        "named_modules",
        "named_parameters",
        "parameters",
        "pop",
        "register_backward_hook",
        "register_buffer",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_full_backward_pre_hook",
        "register_load_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_module",
        "register_parameter",
        "register_state_dict_post_hook",
        "register_state_dict_pre_hook",
        "requires_grad_",
        "set_extra_state",
        "set_submodule",
        "share_memory",
        "state_dict",
        "to",
        "to_empty",
        "train",
        "training",
        "type",
        "xpu",
        "zero_grad",
        "__add__",
        "__annotations__",
        "__call__",
        "__class__",
        "__delattr__",
        "__delitem__",
        "__dict__",
        "__dir__",
        "__doc__",
        "__eq__",
        "__format__",
        "__ge__",
        "__getattr__",
        "__getattribute__",
        "__getitem__",
        "__getstate__",
        "__gt__",
        "__hash__",
        "__iadd__",
        "__imul__",
        "__init__",
        "__init_subclass__",
        "__iter__",
        "__le__",
        "__len__",
        "__lt__",
        "__module__",
        "__mul__",
        "__ne__",
        "__new__",
        "__reduce__",
        "__reduce_ex__",
        "__repr__",
        "__rmul__",
        "__setattr__",
        "__setitem__",
        "__setstate__",
        "__sizeof__",
        "__str__",
        "__subclasshook__",
        "__weakref__",
    }
)

# What archc.build adds to the top-level model (and the per-mode forwards of a model with train-only
# heads): taken at the top level only.
MODEL_ATTRIBUTES = frozenset(
    {"code", "archc_graph", "archc_heads", "_forward_train", "_forward_eval"}
)


def name_problem(name: object, top_level: bool) -> str | None:
    """Why `name` cannot name a layer, block or seq; None when it can."""
    if not isinstance(name, str) or not name:
        return f"a name is a non-empty string, got {name!r}"
    if "." in name:
        return f"name {name!r} contains '.', which separates module paths (layer1.0.conv1)"
    if not name.isprintable():
        return f"name {name!r} contains a non-printable character"
    if name == INPUT:
        return "'input' is reserved: it refers to the list's input"
    if name in MODULE_ATTRIBUTES:
        return f"name '{name}' is taken by an attribute of torch's nn.Module; choose another name"
    if top_level and name in MODEL_ATTRIBUTES:
        return (
            f"name '{name}' is taken by an attribute of the model "
            f"archc builds (model.{name}); choose another name"
        )
    return None


def is_plain_attribute(name: str) -> bool:
    """True when `self.NAME` is valid Python naming exactly NAME
    (ASCII identifier, not a keyword)."""
    return name.isascii() and name.isidentifier() and not keyword.iskeyword(name)


__all__ = ["INPUT", "MODEL_ATTRIBUTES", "MODULE_ATTRIBUTES", "is_plain_attribute", "name_problem"]
