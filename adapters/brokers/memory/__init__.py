from adapters.brokers.memory.broker import MemoryBroker

__all__ = ["MemoryBroker"]
