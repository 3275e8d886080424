"""Runs in a network namespace for the multi-host tests: reads one JSON request a line
({"code": ...}), executes it in a namespace kept between requests, and answers one JSON line
({"value": <the last line's value>} or {"error": <traceback>}). Ends at end of input, closing
any ``client`` the code left in its namespace."""

from __future__ import annotations

import ast
import json
import sys
import traceback
from typing import Any


def run(code: str, namespace: dict[str, Any]) -> Any:
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<test>", "exec"), namespace)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), "<test>", "eval"), namespace)


def main() -> None:
    namespace: dict[str, Any] = {"__name__": "__agent__"}
    out = sys.stdout
    sys.stdout = sys.stderr  # prints from the code go to the log, not into the answers
    for line in sys.stdin:
        try:
            reply = {"value": run(json.loads(line)["code"], namespace)}
            text = json.dumps(reply, default=repr)
        except BaseException:
            text = json.dumps({"error": traceback.format_exc()})
        out.write(text + "\n")
        out.flush()
    client = namespace.get("client")
    if client is not None:
        client.close()


if __name__ == "__main__":
    main()
