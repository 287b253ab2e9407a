from __future__ import annotations

from daemon.cli import main

if __name__ == "__main__":
    main()
