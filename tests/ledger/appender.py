"""Another process appending to a ledger: ``appender.py WHERE KEY_HEX NODE COUNT`` appends
COUNT entries of NODE (one transaction each) and prints their ids, one a line.

WHERE is a file path or a postgresql:// URL (``storage_backends.location``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage_backends import open_location  # noqa: E402
from twin.ledger import DatabaseLedger  # noqa: E402

where, key, node, count = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], int(sys.argv[4])
db = open_location(where, key, "ledger")
ledger = DatabaseLedger(db)
try:
    for i in range(count):
        print(ledger.append_entry({"timestamp": 1.0 + i, "node_id": node, "features": {"i": i},
                                   "confidence": 0.5}), flush=True)
finally:
    db.close_all()
