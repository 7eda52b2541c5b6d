"""tgstream: a 24/7 broadcaster of a looping playlist into a Telegram video chat, RTMP or a preview.

The systemd service is ``tg_video_streamer``. Start reading at :mod:`tgstream.engine`.
"""

__version__ = "0.1.0"
