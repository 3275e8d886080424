"""The variables a worker process starts with, as a pure function of the shell's
environment, dask's ``distributed.nanny.*environ`` config and the memory limit: no
processes (the integration tests in tests/integration/test_worker_environ.py start some)."""

from __future__ import annotations

from shoal.worker._spawn_environ import allocator_threshold, mmap_threshold, spawn_environ

MiB = 2**20
GiB = 2**30


def test_allocator_threshold_is_a_64th_of_the_memory_limit_up_to_16_mib() -> None:
    assert allocator_threshold(0) == 16 * MiB  # no limit
    assert allocator_threshold(GiB) == 16 * MiB
    assert allocator_threshold(8 * GiB) == 16 * MiB
    assert allocator_threshold(300_000_000) == 300_000_000 // 64  # ~4.5 MiB
    assert allocator_threshold(512 * MiB) == 8 * MiB


def test_blocks_of_4_mib_and_more_are_mapped_so_freeing_them_returns_them() -> None:
    # A shuffle's sorted groups and joins (4 and 8 MiB columns) kept in the heap left
    # 60-200 MB of freed heap resident at its peak; a 4 MB HDF5 chunk stays in the heap.
    assert mmap_threshold(0) == mmap_threshold(8 * GiB) == 4 * MiB
    assert mmap_threshold(GiB) > 4_000_000
    assert mmap_threshold(128 * MiB) == allocator_threshold(128 * MiB) == 2 * MiB


def test_small_workers_get_small_malloc_thresholds() -> None:
    env = spawn_environ({}, memory_limit=300_000_000)
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(4_687_500)
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(4 * MiB)
    small = spawn_environ({}, memory_limit=128 * MiB)
    assert small["MALLOC_TRIM_THRESHOLD_"] == small["MALLOC_MMAP_THRESHOLD_"] == str(2 * MiB)
    big = spawn_environ({}, memory_limit=4 * GiB)
    assert big["MALLOC_TRIM_THRESHOLD_"] == str(16 * MiB)
    assert big["MALLOC_MMAP_THRESHOLD_"] == str(4 * MiB)


def test_config_overrides_the_defaults() -> None:
    env = spawn_environ({}, pre_spawn={"MALLOC_TRIM_THRESHOLD_": 131072, "X": 7},
                        environ={"Y": "y"})
    assert env["MALLOC_TRIM_THRESHOLD_"] == "131072"
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(4 * MiB)
    assert (env["X"], env["Y"]) == ("7", "y")


def test_none_in_the_config_leaves_the_variable_unset() -> None:
    # dask: "Allow unsetting a variable in a config override by setting its value to None"
    env = spawn_environ({}, pre_spawn={"MALLOC_MMAP_THRESHOLD_": None, "OMP_NUM_THREADS": None},
                        environ={"Z": None})
    assert "MALLOC_MMAP_THRESHOLD_" not in env
    assert "OMP_NUM_THREADS" not in env
    assert "Z" not in env
    assert "None" not in env.values()


def test_a_variable_exported_in_the_shell_wins_over_config_and_defaults() -> None:
    shell = {"MALLOC_TRIM_THRESHOLD_": "65536", "X": "shell", "OMP_NUM_THREADS": "4"}
    env = spawn_environ(shell, pre_spawn={"X": "config"}, memory_limit=300_000_000)
    assert env["MALLOC_TRIM_THRESHOLD_"] == "65536"
    assert env["X"] == "shell"
    assert env["OMP_NUM_THREADS"] == "4"
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(4 * MiB)  # not exported: the default


def test_an_explicit_nanny_env_wins_over_the_shell() -> None:
    env = spawn_environ({"X": "shell"}, pre_spawn={"X": "config"}, explicit={"X": "given"})
    assert env["X"] == "given"


def test_distributeds_shipped_defaults_are_not_the_users_settings() -> None:
    shipped = {"MALLOC_TRIM_THRESHOLD_": 65536, "OMP_NUM_THREADS": 1}
    env = spawn_environ({}, pre_spawn=dict(shipped), shipped_pre_spawn=shipped)
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(16 * MiB)
    assert env["OMP_NUM_THREADS"] == "1"
