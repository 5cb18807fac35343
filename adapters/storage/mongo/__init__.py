from adapters.storage.mongo.storage import MongoStorage, MongoUnitOfWork
from adapters.storage.mongo.workers import MongoWorkerRegistry

__all__ = ["MongoStorage", "MongoUnitOfWork", "MongoWorkerRegistry"]
