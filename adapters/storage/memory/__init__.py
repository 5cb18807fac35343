from adapters.storage.memory.storage import MemoryStorage, MemoryUnitOfWork, MemoryWorkerRegistry

__all__ = ["MemoryStorage", "MemoryUnitOfWork", "MemoryWorkerRegistry"]
