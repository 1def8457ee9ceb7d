import pymongo
import redis


def test_redis_server_answers_ping(redis_url: str) -> None:
    assert redis.Redis.from_url(redis_url).ping() is True


def test_secantus_speaks_mongodb_wire(mongo_db) -> None:  # type: ignore[no-untyped-def]
    mongo_db.things.insert_one({"_id": 1, "v": "x"})
    assert mongo_db.things.find_one({"_id": 1}) == {"_id": 1, "v": "x"}
    assert isinstance(mongo_db.client, pymongo.MongoClient)
