"""The fragmented-MP4 box reader the recorder cuts segments with; it lives in `vault.mp4`.

The vault joins a recording run's segments into one MP4 for an export with the same reader,
and the vault may not import the recorder, so the code sits there and this name stays for the
recorder and the HLS server.
"""

from vault.mp4 import (
    DEFAULT_MAX_BOX_SIZE,
    SAMPLE_IS_NON_SYNC,
    Box,
    BoxReader,
    BoxTooLargeError,
    DecodeTimeField,
    Fragment,
    FragmentedMp4Reader,
    InitSegment,
    Item,
    Mp4Error,
    TrackFragment,
    TrackInfo,
    decode_time_fields,
    iter_boxes,
    parse_fragment,
    parse_init,
)

__all__ = [
    "DEFAULT_MAX_BOX_SIZE",
    "SAMPLE_IS_NON_SYNC",
    "Box",
    "BoxReader",
    "BoxTooLargeError",
    "DecodeTimeField",
    "Fragment",
    "FragmentedMp4Reader",
    "InitSegment",
    "Item",
    "Mp4Error",
    "TrackFragment",
    "TrackInfo",
    "decode_time_fields",
    "iter_boxes",
    "parse_fragment",
    "parse_init",
]
