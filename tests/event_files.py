"""Read TensorBoard event files without TensorBoard: TFRecord framing + tensorboardX's protos."""

from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from every events.out.tfevents.* file in `folder`."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            # Record: uint64 length, uint32 length-crc, payload, uint32 payload-crc.
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars[value.tag].append((int(event.step), round(value.simple_value, 6)))
    return dict(scalars)
