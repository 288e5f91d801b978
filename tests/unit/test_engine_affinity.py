"""Which core a served single-thread engine instance binds itself to (engines.instance_core)."""

import pytest

from hpi_triton.python_backend.engines import EngineError, instance_core


def test_single_thread_instances_spread_one_per_core():
    cores = [2, 5]  # the cores this process may use, e.g. a container's cpuset
    assert instance_core({"cpu_threads": "1"}, 2, "cls_engine_0_0", cores) == 2
    assert instance_core({"cpu_threads": "1"}, 2, "cls_engine_0_1", cores) == 5
    # four instances over two cores: two per core, evenly
    assert instance_core({"cpu_threads": "1"}, 4, "det_0_3", cores) == 5


@pytest.mark.parametrize("params, instances, name, cores", [
    ({"cpu_threads": "0"}, 2, "m_0_1", [0, 1]),          # all-cores instance: never bound
    ({"cpu_threads": "2"}, 2, "m_0_1", [0, 1, 2, 3]),
    ({"cpu_threads": "1"}, 1, "m_0_0", [0, 1]),          # one instance: nothing to spread
    ({"cpu_threads": "1"}, 3, "m_0_2", [0, 1]),          # uneven: a core would carry two
    ({"cpu_threads": "1"}, 2, "m_0_x", [0, 1]),          # no index in the name
    ({"cpu_threads": "1", "cpu_affinity": "none"}, 2, "m_0_1", [0, 1]),  # opted out
])
def test_left_to_the_scheduler(params, instances, name, cores):
    assert instance_core(params, instances, name, cores) is None


def test_the_parameter_is_consumed_and_checked():
    params = {"cpu_threads": "1", "cpu_affinity": "none"}
    instance_core(params, 2, "m_0_0", [0, 1])
    assert "cpu_affinity" not in params  # not passed on to the engine's own settings
    with pytest.raises(EngineError, match="'cpu_affinity' is 'pin'; expected 'spread'"):
        instance_core({"cpu_threads": "1", "cpu_affinity": "pin"}, 2, "m_0_0", [0, 1])
