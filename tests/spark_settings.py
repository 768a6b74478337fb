"""The shared test session's SQL settings, and keeping them while an in-process `cdp ...` call reuses the session.

The CLI builds its session with `getOrCreate`, which applies the CLI's embedded defaults (AQE on, 2 x cores shuffle
partitions) to an already running session. In the test suite that session is the shared one of tests/conftest.py.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import pytest

# local[1], one shuffle partition, AQE off: measured fastest for many tiny tests on 2 cores.
TEST_SQL_CONF = {"spark.sql.adaptive.enabled": "false", "spark.sql.shuffle.partitions": "1"}


@contextlib.contextmanager
def cli_keeps_test_settings() -> Iterator[None]:
    """While active, the CLI's embedded settings carry the test session's SQL settings, so an in-process CLI call
    that reuses the shared session leaves it as it was.

    Example:
        >>> with cli_keeps_test_settings():  # doctest: +SKIP
        ...     main(["run", "daily", "--conf", "conf/cdp.yaml"])
    """
    from cdp_spark import spark as spark_module

    embedded = spark_module.embedded_conf
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spark_module, "embedded_conf", lambda **kw: {**embedded(**kw), **TEST_SQL_CONF})
        yield
