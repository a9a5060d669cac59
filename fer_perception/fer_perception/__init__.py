"""fer_perception: facial expression, age and gender perception for ROS 2, from event cameras and frames.

The package is a ROS-free core (event decoding, windows, representations, faces, models, runtime, annotation,
evaluation, training) plus a thin rclpy layer in :mod:`fer_perception.ros`.
"""

__version__ = "0.1.0"
