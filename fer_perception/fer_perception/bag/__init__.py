"""Rosbag reading and writing without ROS, through rosbags (sqlite3 and mcap rosbag2; ROS 1 bags to read)."""
