"""What a classic node class declares: its inputs in INPUT_TYPES order, which of them are widgets,
and how many extra widget values the frontend stores after each one."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Types for which ComfyUI's frontend draws a widget (and stores a value in widgets_values) unless the
# input says forceInput. A Python list as the type is a combo. The frontend has a few more widget
# types (COLOR, ...); these are the ones a classic node pack uses.
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "MARKDOWN", "IMAGEUPLOAD"})
# Inputs --set can give a value to (the rest take a link from another node).
VALUE_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: Any  # a type name, or a list of choices (a combo)
    options: dict = field(default_factory=dict)
    category: str = "required"  # required | optional | hidden

    @property
    def type_name(self) -> str:
        return "COMBO" if isinstance(self.type, (list, tuple)) else str(self.type)

    @property
    def choices(self) -> list | None:
        if isinstance(self.type, (list, tuple)):
            return list(self.type)
        if self.type == "COMBO" and isinstance(self.options.get("options"), (list, tuple)):
            return list(self.options["options"])
        return None

    @property
    def is_widget(self) -> bool:
        return self.category != "hidden" and self.type_name in WIDGET_TYPES and not self.options.get("forceInput")

    @property
    def extra_widget_values(self) -> int:
        """Values the frontend stores right after this widget's own: the control_after_generate combo
        (automatic on INT inputs named seed / noise_seed unless the option says otherwise), plus a
        filter-list text for combos."""
        control = self.options.get("control_after_generate")
        if self.type_name == "INT":
            if control is None:
                control = self.name in ("seed", "noise_seed")
            return 1 if control else 0
        if self.type_name == "COMBO" and control:
            return 2
        return 0

    def default(self) -> Any:
        """The value a new widget starts with in the frontend."""
        if "default" in self.options:
            return self.options["default"]
        if self.choices:
            return self.choices[0]
        return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(self.type_name)


def input_specs(cls: type) -> list[InputSpec]:
    """Inputs in INPUT_TYPES order: required, optional, hidden. A name in more than one section
    counts once, in the first (as ComfyUI's get_input_info)."""
    declared = cls.INPUT_TYPES()
    if not isinstance(declared, dict):
        raise TypeError(f"INPUT_TYPES() returned {type(declared).__name__}, not a dict")
    specs, seen = [], set()
    for category in ("required", "optional", "hidden"):
        section = declared.get(category) or {}
        for name, info in section.items():
            if name in seen:
                continue
            seen.add(name)
            if category == "hidden":
                specs.append(InputSpec(name, info if isinstance(info, str) else info[0], {}, category))
                continue
            if not isinstance(info, (tuple, list)) or not info:
                raise TypeError(f"INPUT_TYPES entry {name!r} must be a (type, options) tuple, got {info!r}")
            options = info[1] if len(info) > 1 and isinstance(info[1], dict) else {}
            specs.append(InputSpec(name, info[0], options, category))
    return specs


def class_problems(cls: type) -> list[str]:
    """What is wrong with a class as a classic ComfyUI node, in words; empty when nothing is."""
    problems = []
    if not callable(getattr(cls, "INPUT_TYPES", None)):
        problems.append("has no INPUT_TYPES classmethod")
    else:
        try:
            input_specs(cls)
        except Exception as err:  # a broken node class must not crash validation of the others
            problems.append(f"INPUT_TYPES() failed: {type(err).__name__}: {err}")
    returns = getattr(cls, "RETURN_TYPES", None)
    if not isinstance(returns, (tuple, list)):
        problems.append("RETURN_TYPES must be a tuple")
        returns = ()
    function = getattr(cls, "FUNCTION", None)
    if not isinstance(function, str) or not callable(getattr(cls, function, None)):
        problems.append(f"FUNCTION {function!r} does not name a method of the class")
    is_list = getattr(cls, "OUTPUT_IS_LIST", None)
    if is_list is not None and len(is_list) != len(returns):
        # ComfyUI zips the two and silently drops outputs past the shorter one.
        problems.append(f"OUTPUT_IS_LIST has {len(is_list)} entries but RETURN_TYPES has {len(returns)}")
    return problems
