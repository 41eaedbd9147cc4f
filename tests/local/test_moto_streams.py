"""The local platform's moto: stream records written at the same moment keep distinct sequence numbers."""

from __future__ import annotations

import subprocess
import sys

# moto's StreamShard.add numbers a record by the shard's length, then appends it. Here that window
# is widened (a sleep in between) so that, unguarded, every concurrent add takes the same number.
CHILD = """
import threading, time
from moto.dynamodb.models.table import StreamShard

def add_slowly(self, old, new):
    sequence = len(self.items) + self.starting_sequence_number
    time.sleep(0.05)
    self.items.append(sequence)

StreamShard.add = add_slowly
from meshanics_local.awsserver import _lighten_moto

_lighten_moto()
shard = StreamShard.__new__(StreamShard)
shard.items, shard.starting_sequence_number = [], 100
threads = [threading.Thread(target=shard.add, args=(None, {})) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sorted(shard.items))
"""


def test_concurrent_stream_records_get_distinct_sequence_numbers() -> None:
    # In a child: the lightening patches moto for the whole process.
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[100, 101, 102, 103]"
