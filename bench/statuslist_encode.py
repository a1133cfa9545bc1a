"""Status list encoding speed: a 2^17-entry, 2-bit list (herd privacy size) re-encoded after
each change, against zlib at level 9 with the full window as the peer."""

from __future__ import annotations

import random
import zlib

from bench.harness import ops_per_second, write_report
from civic.statuslist import StatusList


def main() -> None:
    status_list = StatusList(1 << 17, 2)
    rng = random.Random(11)
    for index in rng.sample(range(1 << 17), (1 << 17) // 10):
        status_list.set(index, rng.choice((1, 2)))
    raw = status_list.to_bytes()
    results = ops_per_second(
        {
            "civic_encode": status_list.encode,
            "zlib_level9_full_window": lambda: zlib.compress(raw, 9),
        },
        rounds=5,
    )
    median = {k: v["median_ops_per_s"] for k, v in results.items()}
    path = write_report(
        "statuslist_encode",
        {
            "what": "encodes per second of a 131,072-entry 2-bit status list (10% set)",
            "results": results,
            "median_ms": {k: round(1000 / v, 2) for k, v in median.items()},
            "ratio_civic_vs_zlib_full_window": round(
                median["civic_encode"] / median["zlib_level9_full_window"], 2
            ),
            "encoded_bytes": len(status_list.compressed()),
            "targets": {"civic_encode median_ms": "< 50"},
        },
    )
    print(
        f"status list encode: {1000 / median['civic_encode']:.1f} ms median "
        f"(zlib full window {1000 / median['zlib_level9_full_window']:.1f} ms); written {path}"
    )


if __name__ == "__main__":
    main()
