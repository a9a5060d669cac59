"""Event-camera data: decoding ROS event messages, bounded buffers, windows and tensor representations."""

from fer_perception.events.batch import EventBatch

__all__ = ["EventBatch"]
