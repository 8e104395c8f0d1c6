"""Reusable test support: a real RTSP server, ffmpeg media generators."""
