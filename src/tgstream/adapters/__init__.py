"""Adapters at the edge: ffmpeg/ffprobe, yt-dlp, MPEG-TS, and the outputs."""
