"""``python bench/track_change_json.py MEDIA local|http [LOG]``: one track-change run
(``track_change_gaps``) on whatever ``tgstream`` is first on PYTHONPATH; prints its figures as
JSON (last line). ``bench/track_change_side_by_side.sh`` runs it for two trees in turns."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from tests.tgstream.harness import http_server

from bench import tgstream_bench


def main() -> None:
    root, case = Path(sys.argv[1]), sys.argv[2]
    logging.basicConfig(
        filename=sys.argv[3] if len(sys.argv) > 3 else None,
        level=logging.INFO,
        format="%(relativeCreated)8.0f %(name)s %(message)s",
    )
    root.mkdir(parents=True, exist_ok=True)
    tgstream_bench.prepare_media(root)
    if case == "local":
        result = tgstream_bench.track_change_gaps(root, None)
    else:
        with http_server(root) as url:
            result = tgstream_bench.track_change_gaps(root, url)
    print(json.dumps({k: v for k, v in result.items() if k not in ("baseline", "arrival")}))


if __name__ == "__main__":
    main()
