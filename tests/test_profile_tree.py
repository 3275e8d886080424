"""The statistical profiler's call trees (``shoal._profile_tree``): dask's tree format,
built from sampled stacks, merged, and picked from a history of cycles by time and key
prefix. Pure: stacks are tuples, no thread is sampled."""

from __future__ import annotations

import copy

from shoal import _profile_tree as trees

OUTER = ("main", "app.py", 1, 5)
MIDDLE = ("load", "app.py", 10, 12)
INNER = ("parse", "lib.py", 3, 4)
OTHER = ("write", "lib.py", 20, 22)


def lines(filename: str, line: int) -> str:
    return f"{filename}:{line}"


def tree_of(*stacks: list[trees.Frame]) -> dict:
    tree = trees.new()
    for stack in stacks:
        trees.add_stack(tree, stack, lines)
    trees.validate(tree)
    return tree


def test_an_empty_tree_is_dasks_root_node():
    tree = trees.new()
    assert tree == {"identifier": "root", "count": 0, "children": {},
                    "description": {"filename": "", "name": "", "line_number": 0, "line": ""}}


def test_a_stack_becomes_a_chain_from_outermost_to_innermost_frame():
    tree = tree_of([OUTER, MIDDLE, INNER])
    assert tree["count"] == 1
    (main,) = tree["children"].values()
    assert main["identifier"] == "main;app.py;1"
    assert main["description"] == {"filename": "app.py", "name": "main", "line_number": 5,
                                   "line": "app.py:5"}
    (load,) = main["children"].values()
    (parse,) = load["children"].values()
    assert parse["identifier"] == "parse;lib.py;3" and parse["children"] == {}


def test_shared_callers_count_every_sample_and_branch_where_stacks_differ():
    tree = tree_of([OUTER, MIDDLE, INNER], [OUTER, MIDDLE, INNER], [OUTER, OTHER])
    main = tree["children"]["main;app.py;1"]
    assert (tree["count"], main["count"]) == (3, 3)
    assert main["children"]["load;app.py;10"]["count"] == 2
    assert main["children"]["write;lib.py;20"]["count"] == 1


def test_the_same_function_at_another_line_is_one_node_described_by_its_first_sample():
    tree = tree_of([OUTER, ("parse", "lib.py", 3, 4)], [OUTER, ("parse", "lib.py", 3, 9)])
    (parse,) = tree["children"]["main;app.py;1"]["children"].values()
    assert parse["count"] == 2 and parse["description"]["line_number"] == 4


def test_merge_adds_counts_node_by_node_and_leaves_its_inputs_alone():
    a = tree_of([OUTER, MIDDLE], [OUTER, MIDDLE])
    b = tree_of([OUTER, OTHER], [INNER])
    a_before, b_before = copy.deepcopy(a), copy.deepcopy(b)
    merged = trees.merge(a, b)
    trees.validate(merged)
    assert (a, b) == (a_before, b_before)
    assert merged["count"] == 4
    main = merged["children"]["main;app.py;1"]
    assert main["count"] == 3 and set(main["children"]) == {"load;app.py;10", "write;lib.py;20"}
    assert merged["children"]["parse;lib.py;3"]["count"] == 1
    merged["children"]["main;app.py;1"]["description"]["line"] = "changed"
    assert a["children"]["main;app.py;1"]["description"]["line"] == "app.py:5"


def test_merge_of_nothing_is_empty_and_of_one_tree_is_a_copy_of_it():
    assert trees.merge() == trees.new()
    a = tree_of([OUTER, MIDDLE])
    assert trees.merge(a) == a and trees.merge(a) is not a


def test_size_counts_nodes_with_the_root():
    assert trees.size(trees.new()) == 1
    assert trees.size(tree_of([OUTER, MIDDLE], [OUTER, OTHER])) == 4


# --- picking cycles ---------------------------------------------------------------------------

CYCLES: list[trees.Cycle] = [
    (0.0, 1.0, {"inc": tree_of([OUTER]), "add": tree_of([MIDDLE], [MIDDLE])}),
    (1.0, 2.0, {"inc": tree_of([OUTER], [OUTER])}),
    (5.0, 6.0, {"add": tree_of([INNER])}),
]


def test_select_without_bounds_merges_every_cycle_and_group():
    tree = trees.select(CYCLES)
    assert tree["count"] == 6
    assert tree["children"]["main;app.py;1"]["count"] == 3


def test_select_by_key_prefix_keeps_that_group_only():
    assert trees.select(CYCLES, key="inc")["count"] == 3
    assert set(trees.select(CYCLES, key="add")["children"]) == {"load;app.py;10",
                                                                "parse;lib.py;3"}
    assert trees.select(CYCLES, key="missing") == trees.new()


def test_select_by_time_keeps_the_cycles_overlapping_start_to_stop():
    assert trees.select(CYCLES, start=1.5)["count"] == 3  # cycles 2 and 3
    assert trees.select(CYCLES, stop=0.5)["count"] == 3  # cycle 1
    assert trees.select(CYCLES, start=1.5, stop=4.0, key="inc")["count"] == 2
    assert trees.select(CYCLES, start=2.5, stop=4.0) == trees.new()  # between cycles
    assert trees.select(CYCLES, start=7.0) == trees.new()
