"""tgstream's domain: the playlist and the tracks it yields. Standard library only."""
