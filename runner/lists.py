"""ComfyUI's list semantics (execution.py: _async_map_node_over_list, merge_result_data,
get_output_from_returns), so that a node behaves the same here as in ComfyUI.

Every output is a list. A node without INPUT_IS_LIST is called once per item of its longest input
list, shorter lists repeating their last item; one with INPUT_IS_LIST is called once with whole lists.
An output flagged in OUTPUT_IS_LIST concatenates the lists the calls returned; any other output
collects one item per call.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Any


def call(function: Any, kwargs: dict) -> Any:
    if inspect.iscoroutinefunction(function):
        return asyncio.run(function(**kwargs))
    return function(**kwargs)


def map_over_lists(obj: Any, inputs: dict[str, list], function_name: str) -> list:
    """Call `obj.<function_name>` as ComfyUI does and return the list of what each call returned."""
    function = getattr(obj, function_name)
    if getattr(obj, "INPUT_IS_LIST", False):
        return [call(function, inputs)]
    empty = [name for name, values in inputs.items() if len(values) == 0]
    if empty:
        # ComfyUI would fail here with an IndexError (or call the node with no arguments at all).
        raise ValueError(f"input(s) {', '.join(empty)} received an empty list, so there is nothing to call the node on")
    count = max((len(values) for values in inputs.values()), default=0)
    if count == 0:
        return [call(function, {})]
    return [call(function, {k: v[i] if len(v) > i else v[-1] for k, v in inputs.items()}) for i in range(count)]


def split_returns(returns: list, cls: type) -> tuple[list, list[dict]]:
    """Separate what the calls returned into results (tuples) and ui dicts."""
    results, uis = [], []
    expected = len(cls.RETURN_TYPES)
    for value in returns:
        if isinstance(value, dict):
            if "expand" in value:
                raise TypeError("returned a graph expansion ('expand'), which cvae run does not support")
            if "ui" in value:
                ui = value["ui"]
                if not isinstance(ui, dict) or not all(isinstance(v, (list, tuple)) for v in ui.values()):
                    raise TypeError(f"returned 'ui' {ui!r}; it must be a dict whose values are lists")
                uis.append(ui)
            if "result" not in value:
                continue
            value = value["result"]
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"returned {type(value).__name__}; a node function returns a tuple matching "
                            f"RETURN_TYPES, or a dict with 'ui' and/or 'result'")
        if len(value) != expected:
            raise TypeError(f"returned {len(value)} value(s) but RETURN_TYPES declares {expected}")
        results.append(value)
    return results, uis


def merge_results(results: list, cls: type) -> list[list]:
    """One list per output slot (merge_result_data)."""
    if not results:
        return []
    output_is_list = getattr(cls, "OUTPUT_IS_LIST", None) or [False] * len(results[0])
    merged = []
    for i, is_list in zip(range(len(results[0])), output_is_list):
        if is_list:
            value: list = []
            for result in results:
                value.extend(result[i])
            merged.append(value)
        else:
            merged.append([result[i] for result in results])
    return merged


def merge_ui(uis: list[dict]) -> dict:
    """The ui dicts of all calls, each key's lists concatenated (keys of the first call)."""
    if not uis:
        return {}
    return {key: [item for ui in uis for item in ui.get(key, [])] for key in uis[0]}
