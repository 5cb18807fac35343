"""Google Cloud Pub/Sub broker (google-cloud-pubsub): a batching publisher, and a
streaming-pull consumer with flow control, lease management and dead-lettering."""

from adapters.brokers.pubsub.consumer import PubSubConsumer, PubSubDelivery
from adapters.brokers.pubsub.options import PubSubOptions
from adapters.brokers.pubsub.publisher import PubSubPublisher

__all__ = ["PubSubConsumer", "PubSubDelivery", "PubSubOptions", "PubSubPublisher"]
