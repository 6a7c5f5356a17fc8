"""The tests' Redis databases: a leased database is emptied only when it is the tests'
own (empty, or marked by an earlier lease); anybody else's keys are never touched."""

from __future__ import annotations

import uuid

import pytest
import redis
from conftest import TEST_DATABASE_MARK, _test_database


@pytest.fixture
def spare(redis_url: str) -> redis.Redis:
    """A database this test leased (so no other test uses it meanwhile), emptied."""
    client = redis.Redis.from_url(redis_url)
    client.delete(TEST_DATABASE_MARK)
    yield client
    client.close()


def test_a_database_holding_someone_elses_keys_is_not_claimed(spare: redis.Redis) -> None:
    key = f"someone-else:{uuid.uuid4().hex}"
    spare.set(key, "keep me")
    assert _test_database(redis.Redis(connection_pool=spare.connection_pool)) is False
    assert spare.get(key) == b"keep me" and not spare.exists(TEST_DATABASE_MARK)
    spare.delete(key)


def test_an_empty_or_marked_database_is_claimed_and_marked(spare: redis.Redis) -> None:
    assert _test_database(redis.Redis(connection_pool=spare.connection_pool)) is True
    assert spare.exists(TEST_DATABASE_MARK)
    spare.set("left-by-a-killed-run", "1")  # a marked database is the tests' to empty
    assert _test_database(redis.Redis(connection_pool=spare.connection_pool)) is True
