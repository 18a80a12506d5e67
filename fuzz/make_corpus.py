#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets: fuzz/corpus/<target>/<name>.

Each seed is a small hand-made input in the target's own format (see the
comment at the top of fuzz/target_<target>.c), chosen to reach one behaviour:
the seed crate README's three diagrams, alloc mode, FAIL and WAIT pools, the
2^32 capacity, releases on worker threads, cross-process publishing over the
ring and over the socket, a consumer that dies, valid and broken descriptors
and control blocks, frames split every possible way.

Seeds must pass on a correct library (tests/test_fuzz_regress.c runs them all):
inputs that found a library bug live in fuzz/regress/<target>/.

    fuzz/make_corpus.py            rewrite every corpus (deterministic)
    fuzz/make_corpus.py TARGET...  only these
    fuzz/make_corpus.py --regress  write the hand-made inputs of fuzz/regress/
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# --- shared encodings (must match the targets) -------------------------------

# target_faster.c
FAST_CAPS = [0, 1, 2, 6, 7, 8, 15, 16, 31, 32, 63, 64, 65, 100, 127, 128, 255, 256, 257, 512, 1000,
             1024, 2048, 4095, 4096, 4097, 8192, 16384, 65535, 65536, 65537, 1 << 20, 0xffffffff, 1 << 32]
FAST_SLOTS = [1, 2, 3, 4, 7, 8, 8, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64]
# pool_driver.c
FAST_LENS = [0, 1, 2, 3, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256,
             257, 1000, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 65536]
FAST_HOLDS = [0, 0, 1, 2, 5, 10, 20, 50, 100]

OP_MSG, OP_KEEP, OP_RELEASE, OP_DRAIN, OP_EMPTY, OP_STALE, OP_DESTROY, OP_RELEASE_ALL = 0, 7, 9, 11, 12, 13, 14, 15
FALLBACK, FAIL, WAIT = 0, 1, 2


def u8(v):
    return bytes([v & 0xff])


def u16(v):
    return struct.pack('<H', v & 0xffff)


def u32(v):
    return struct.pack('<I', v & 0xffffffff)


def u64(v):
    return struct.pack('<Q', v & 0xffffffffffffffff)


def range_bytes(v, span):
    """fz_range(lo, lo+span) reading v (v <= span): big-endian, as many bytes as span needs."""
    n = 0
    while n < 8 and (span >> (8 * n)) != 0:
        n += 1
    return v.to_bytes(n, 'big') if n else b''


# --- faster / slower ---------------------------------------------------------


def fast_msg(length, keep=False, chunks=1, flags=0, hold=0, worker=0, idx0=None, ask=None):
    """A MSG (to a worker) or KEEP operation of target faster."""
    out = u8(OP_KEEP if keep else OP_MSG)
    out += u8(FAST_LENS.index(length))
    out += u8(chunks - 1)
    out += u8(flags)
    if not keep:
        out += u8(FAST_HOLDS.index(hold)) + u8(worker)
    if flags & 2:
        out += range_bytes(idx0, length)
    if flags & 4:
        out += range_bytes(ask, length + 1)
    if chunks > 1:
        # every chunk but the last takes half of what is left
        left = length
        for _ in range(chunks - 1):
            out += range_bytes(left // 2, left)
            left -= left // 2
    return out


def faster_head(cap, slots, policy=FALLBACK, wait=0):
    pol = {FALLBACK: 0, FAIL: 6, WAIT: 7}[policy]
    return u8(FAST_CAPS.index(cap)) + u8(FAST_SLOTS.index(slots)) + u8(pol) + u8(wait)


def faster_seeds():
    s = {}
    # README case 1: exhaustion, then alloc mode.
    s['readme1_exhaustion'] = (faster_head(1000, 8) + b''.join(fast_msg(100, keep=True) for _ in range(11)) +
                               u8(OP_RELEASE_ALL) + u8(0))
    # README case 2: every slice released, the pool restarts at 0.
    s['readme2_reset'] = (faster_head(1000, 8) + b''.join(fast_msg(100, keep=True) for _ in range(8)) +
                          u8(OP_RELEASE_ALL) + u8(1) + fast_msg(100, keep=True) + fast_msg(100, keep=True))
    # README case 3: back -> front -> back.
    s['readme3_back_front_back'] = (
        faster_head(1024, 8) + b''.join(fast_msg(128, keep=True) for _ in range(8)) +
        u8(OP_RELEASE) + u8(0) + u8(OP_RELEASE) + u8(0) +           # consume the first two
        fast_msg(128, keep=True) + fast_msg(128, keep=True) +         # front mode
        u8(OP_RELEASE) + u8(5) + u8(OP_RELEASE) + u8(4) +           # the last two of the back run
        fast_msg(128, keep=True) + fast_msg(128, keep=True))          # back mode again
    # Workers: many slices held for a while on other cores, some split, with
    # danger_set_start and get_data_by_ref.
    ops = b''
    for i in range(24):
        ops += fast_msg([64, 100, 1000, 4096, 1, 255][i % 6], chunks=1 + i % 3, flags=(6 if i % 4 == 0 else 0),
                        hold=[0, 5, 20, 100][i % 4], worker=i % 3, idx0=3 if i % 4 == 0 else None,
                        ask=50 if i % 4 == 0 else None)
    s['workers_mixed'] = faster_head(65536, 8) + ops + u8(OP_DRAIN)
    s['workers_64_slots'] = faster_head(4096, 64) + b''.join(
        fast_msg(100, hold=50, worker=i % 3) for i in range(40)) + u8(OP_DRAIN)
    s['one_slot'] = faster_head(256, 1) + b''.join(fast_msg(128, hold=5, worker=i % 3) for i in range(8))
    # FAIL and WAIT pools: full, then too long for the pool.
    s['fail_full'] = faster_head(256, 4, FAIL) + b''.join(fast_msg(100, keep=True) for _ in range(4)) + \
        fast_msg(1000, hold=0) + u8(OP_RELEASE_ALL) + u8(0) + fast_msg(255, hold=1)
    s['wait_workers'] = faster_head(1024, 4, WAIT, 1) + b''.join(
        fast_msg(257, hold=100, worker=i % 3) for i in range(10))
    # The 2^32 capacity, and 0.
    s['cap_2_32'] = faster_head(1 << 32, 64) + b''.join(fast_msg(65536, hold=10, worker=i % 3) for i in range(6))
    s['cap_0'] = faster_head(0, 8) + fast_msg(100, hold=1) + fast_msg(0) + u8(OP_EMPTY) + fast_msg(1, keep=True)
    # Refused releases and destroy while slices are live.
    s['stale_and_destroy'] = (faster_head(1024, 8) + fast_msg(100, keep=True) + fast_msg(100, keep=True) +
                              u8(OP_RELEASE) + u8(0) + fast_msg(100, hold=20, worker=1) + u8(OP_STALE) + u8(0) +
                              u8(OP_DESTROY) + u8(OP_RELEASE_ALL) + u8(0) + u8(OP_STALE) + u8(0))
    # Writes through write()/write_all() in several chunks, in alloc mode.
    s['write_chunks_alloc'] = faster_head(64, 2) + b''.join(
        fast_msg(1000, chunks=3, flags=1, hold=2, worker=i % 3) for i in range(6))
    return s


def slower_msg(length, keep=False, chunks=1, flags=0, hold=0, worker=0, lclass=None):
    out = u8(OP_KEEP if keep else OP_MSG)
    if lclass is None:
        lclass = 0 if length < 256 else 1 if length < 65536 else 2
    out += u8(lclass)
    if lclass == 0:
        out += u8(length)
    elif lclass == 1:
        out += u16(length)
    elif lclass == 2:
        out += u16(length & 0xffff) + u8(length >> 16)
    out += u8(chunks - 1) + u8(flags)
    if not keep:
        out += u16(hold) + u8(worker)
    if chunks > 1:
        left = length
        for _ in range(chunks - 1):
            out += range_bytes(left // 2, left)
            left -= left // 2
    return out


def slower_head(cap_class, cap_bytes, slots, policy=FALLBACK, wait=0):
    return u8(cap_class) + cap_bytes + u8(slots - 1) + u8(policy) + u8(wait)


def slower_seeds():
    s = {}
    s['u32_cap_workers'] = slower_head(2, u32(3_000_000), 8) + b''.join(
        slower_msg(300_000, chunks=4, hold=300, worker=i % 3) for i in range(6))
    s['cap_2_32_big'] = slower_head(4, b'', 64) + b''.join(
        slower_msg(1 << 20, chunks=8, hold=1000, worker=i % 3) for i in range(3))
    s['just_below_2_32'] = slower_head(3, u8(1), 33) + b''.join(
        slower_msg(70000, hold=50, worker=i % 3) for i in range(5))
    s['u8_cap_alloc'] = slower_head(0, u8(200), 3) + b''.join(
        slower_msg(150, hold=10, worker=i % 3, chunks=2) for i in range(10))
    s['u16_cap_fail'] = slower_head(1, u16(5000), 5, FAIL) + b''.join(
        slower_msg(1200, keep=(i % 2 == 0)) for i in range(8)) + u8(OP_RELEASE_ALL) + u8(1)
    s['u16_cap_wait'] = slower_head(1, u16(4000), 2, WAIT, 3) + b''.join(
        slower_msg(1500, hold=800, worker=i % 3) for i in range(6))
    s['cap_relative'] = slower_head(1, u16(1000), 8) + b''.join(
        u8(OP_MSG) + u8(3) + u8(k) + u8(d) + u8(0) + u8(0) + u16(20) + u8(1)
        for k, d in [(0, 0), (0, 1), (1, 0xff), (2, 0), (2, 1), (3, 0x80)])
    return s


# --- cross_process -----------------------------------------------------------

XCAPS = [0, 64, 256, 1000, 4096, 65536]


XHELD = {'slots': 0, 'default': 1, 1: 2, 2: 3}  # max_held selector (bits 3-4 of the ring byte)


def xhead(cap, slots, policy=WAIT, socket=False, no_uring=False, notify=0, two=False, c_no_uring=(0, 0),
          ring_log=3, die=None, spins=(0, 0), skip=False, max_held='slots'):
    """notify 0: DEFAULT, 1: SOCKET; skip: SV2SHM_LIMIT_SKIP (else REFUSE)."""
    cb = XCAPS.index(cap)
    pb = {WAIT: 0, FAIL: 6, FALLBACK: 7}[policy]
    fl = (1 if socket else 0) | (2 if no_uring else 0) | (notify << 2) | (8 if skip else 0) | \
        (16 if two else 0) | (c_no_uring[0] << 5) | (c_no_uring[1] << 6)
    db = 0
    if die is not None:
        fl |= 128
        who, after = die
        db = 0x70 | ((after - 1) & 7) | (who << 7)
    rb = ring_log | (XHELD[max_held] << 3)  # entries = 2 << ring_log
    sb = spins[0] | (spins[1] << 2)  # event loops stay off in seeds (known bug)
    return u8(cb) + u8(slots - 1) + u8(pb) + u8(fl) + u8(rb) + u8(db) + u8(sb)


def xmsg(length, chunks=1, targets=0, hold_units=0, more=False, flush=False):
    """length is the payload after the 8-byte header; targets 0: c0, 1: c1, 2: both."""
    if length < 256:
        out = u8(0) + u8(length)
    else:
        out = u8(1) + u16(length)
    out += u8(chunks - 1)
    out += u8(targets) + u8(hold_units) + u8((1 if more else 0) | (2 if flush else 0))
    if chunks > 1:  # the chunk sizes are read while writing
        total = length + 8
        left = total
        for _ in range(chunks - 1):
            out += range_bytes(left // 2, left)
            left -= left // 2
    return out


def cross_process_seeds():
    s = {}
    s['ring_wait_one'] = xhead(4096, 8) + b''.join(xmsg(1000, hold_units=10) for _ in range(12))
    s['ring_wait_two_fanout'] = xhead(4096, 8, two=True) + b''.join(
        xmsg(500, chunks=2, targets=i % 3, hold_units=25) for i in range(16))
    s['ring_full_small'] = xhead(1000, 4, ring_log=0) + b''.join(xmsg(100, hold_units=5) for _ in range(20))
    s['batched_more_flush'] = xhead(65536, 16, two=True) + b''.join(
        xmsg(2000, targets=2, more=(i % 4 != 3), flush=(i % 4 == 3)) for i in range(12))
    s['socket_transport'] = xhead(4096, 8, socket=True, two=True) + b''.join(
        xmsg(300, targets=i % 3, hold_units=3) for i in range(10))
    s['notify_socket_syscalls'] = xhead(1000, 2, notify=1, no_uring=True, c_no_uring=(1, 0), two=True) + \
        b''.join(xmsg(400, targets=2, hold_units=50) for _ in range(8))
    # Limits: SKIP leaves a consumer at max_held out (gaps, missed counts);
    # REFUSE with max_held 1 makes publish retry until each release.
    s['skip_max_held_1'] = xhead(4096, 8, skip=True, max_held=1, two=True) + b''.join(
        xmsg(300, targets=i % 3, hold_units=60) for i in range(16))
    s['skip_ring_full_socket'] = xhead(4096, 8, skip=True, socket=True, max_held='default', ring_log=0) + b''.join(
        xmsg(100, hold_units=40) for _ in range(16))
    s['refuse_max_held_1'] = xhead(1000, 4, max_held=1) + b''.join(xmsg(200, hold_units=20) for _ in range(8))
    s['fail_policy'] = xhead(256, 2, FAIL) + b''.join(xmsg(100, hold_units=20) for _ in range(8))
    s['fallback_overflow'] = xhead(256, 2, FALLBACK, two=True) + b''.join(
        xmsg(300, targets=i % 3, hold_units=5) for i in range(6))
    s['fallback_overflow_socket'] = xhead(0, 1, FALLBACK, socket=True) + xmsg(100) + xmsg(5000, chunks=3)
    s['too_long_for_pool'] = xhead(64, 1) + xmsg(100) + xmsg(40)
    s['spin_none'] = xhead(4096, 64, spins=(1, 3), two=True) + b''.join(xmsg(64, targets=2) for _ in range(30))
    s['consumer_dies'] = xhead(1000, 4, two=True, die=(1, 3)) + b''.join(
        xmsg(200, targets=2, hold_units=10) for _ in range(10))
    return s


# --- descriptor --------------------------------------------------------------

DESC_POOL = 0


def desc(version=1, kind=0, slot=0, gen=0, region=0, off=0, length=0):
    return u8(version) + u8(kind) + u16(slot) + u32(gen) + u64(region) + u64(off) + u64(length)


def record(ctrl, raw, holder=None):
    hsel = 0 if holder is None else (0x80 | holder)
    return u8(ctrl) + u8(hsel) + raw


PATCH_ALL = 1 | 2 | 4 | 8 | 16 | 32


def desc_head(geom, lens, attach=None):
    first = geom
    if attach is not None:  # bit 7 asks for the attach section; first % 3 picks the geometry
        first = next(v for v in range(0x80, 0x100) if v % 3 == geom)
    caps = [65536, 4096, 0]
    span = caps[geom] // 4 + 8
    out = u8(first) + u8(len(lens)) + b''.join(range_bytes(l, span) for l in lens)
    if attach is not None:
        out += attach
    return out


def attach_section(fl, fl2, cap=4096, nslots=8, gen=5, holders=2, off=0, length=100, mask=0xff, extra=b''):
    head = u32(0x32767368) + u32(1) + u64(cap) + u32(nslots) + u32(192 + 64 * 32) + u64(0x1234)
    tmpl = u64((gen << 32) | holders) + u64(off) + u64(length) + u64(1)
    return u8(fl) + u8(fl2) + head + u64(mask) + tmpl + extra


def descriptor_seeds():
    s = {}
    # Live slices published to the phantom consumer, opened exactly.
    s['valid_open_release'] = desc_head(0, [100, 2000, 5]) + b''.join(
        record(PATCH_ALL | 0x40, desc(slot=i)) for i in range(3))
    s['valid_open_keep'] = desc_head(1, [10, 20, 30, 40]) + b''.join(
        record(PATCH_ALL, desc(slot=i)) for i in range(4))
    # Off by a little: generation, offset, length, holder, version, kind.
    s['near_misses'] = desc_head(0, [100, 200]) + (
        record(PATCH_ALL, desc(slot=0, gen=0x20)) +          # generation +1 (raw[4] >> 5)
        record(PATCH_ALL, desc(slot=0, off=0x10)) +          # offset +1 (raw[16] >> 4)
        record(PATCH_ALL, desc(slot=1, length=0xf0)) +       # length -1
        record(PATCH_ALL, desc(slot=1), holder=1) +           # the real consumer's bit
        record(PATCH_ALL, desc(slot=1), holder=0) +           # holder 0
        record(PATCH_ALL | 0x80, desc(slot=0, kind=1)) +      # OVERFLOW
        record(PATCH_ALL & ~1, desc(version=2, slot=0)) +     # version 2
        record(PATCH_ALL & ~2, desc(slot=0, region=7)) +      # another region
        record(PATCH_ALL & ~4, desc(slot=0x3ff)))             # slot out of range
    s['free_slots'] = desc_head(1, []) + b''.join(record(PATCH_ALL, desc(slot=i)) for i in range(8))
    s['raw_garbage'] = desc_head(2, []) + record(0, b'\xff' * 32) + record(0, desc(length=1 << 63)) + \
        record(2, desc(off=(1 << 64) - 1, length=2))
    s['cap0_region'] = desc_head(2, []) + record(1 | 2 | 4, desc()) + record(1 | 2 | 4, desc(length=1))
    # Control blocks given to region_attach.
    valid = 1 | 2 | 4 | 8 | 16 | 64
    opens = desc(version=0x80, slot=0) + desc(version=0x80, slot=1 << 8) + desc()  # raw[3]: the slot named
    s['attach_valid'] = desc_head(1, [50], attach_section(valid, 0, extra=opens))
    s['attach_writable_unsealed'] = desc_head(
        0, [], attach_section(valid, 2 | 4, extra=u8(1 | 2 | 4) + opens))
    s['attach_bad_magic'] = desc_head(0, [], attach_section(valid & ~1, 0))
    s['attach_bad_size'] = desc_head(0, [], attach_section(valid & ~64, 0, extra=u16(100)))
    s['attach_short_ctl'] = desc_head(0, [], attach_section(valid | 128, 0, extra=u16(64)))
    s['attach_missing_seals'] = desc_head(0, [], attach_section(valid, 1 | 2, extra=u8(3) + u8(7)))
    s['attach_bad_fds'] = desc_head(0, [], attach_section(valid, 16))
    s['attach_pipe_fd'] = desc_head(0, [], attach_section(valid, 48))
    s['attach_cap_2_32'] = desc_head(0, [], attach_section(1 | 2 | 4 | 8 | 32 | 64, 0, extra=opens))
    return s


# --- frame_decoder -----------------------------------------------------------


def frame(ext, mtype, payload):
    n = len(payload)
    return struct.pack('<HB', ext, mtype) + bytes([n & 0xff, (n >> 8) & 0xff, n >> 16]) + payload


def fd_head(capsel, slots, policy=FALLBACK, wait=0, maxp=(0, b''), hold=0, modes=0, mult=0,
            chunks=(1, 5, 17, 255), cap16=None):
    """capsel 0..6: 0, 6, 7, 64, 256, 4096, 65536 bytes; 7: cap16."""
    pb = next(v for v in range(256) if v % 3 == policy and (v >> 2) & 1 == wait)
    out = u8(capsel)
    if capsel == 7:
        out += u16(cap16)
    return (out + u8(slots - 1) + u8(pb) + u8(maxp[0]) + maxp[1] + u8(hold) + u8(modes) + u8(mult) +
            bytes(chunks))


def stream(n):
    out = b''
    for i in range(n):
        out += frame(0x8000 * (i % 2) | i, i & 0xff, bytes((i * 7 + j) & 0xff for j in range((i * 37) % 97)))
    return out


def frame_decoder_seeds():
    s = {}
    st = stream(12)
    s['pool_memory_chunks'] = fd_head(5, 8, hold=3) + st
    s['pipe_both'] = fd_head(5, 8, hold=2, modes=3, chunks=(3, 64, 0, 7)) + st
    s['fail_pool_held'] = fd_head(1, 4, FAIL, hold=8) + st  # capacity 6: only empty frames fit
    s['fail_pool_64'] = fd_head(3, 2, FAIL, hold=8, chunks=(255, 255, 255, 255), mult=2) + stream(6)
    s['wait_pool'] = fd_head(4, 3, WAIT, 1, hold=5) + st
    s['max_payload_small'] = fd_head(5, 8, maxp=((20 << 2) | 1, b''), hold=1) + frame(1, 2, b'x' * 20) + \
        frame(1, 3, b'y' * 21) + frame(1, 4, b'')
    s['max_payload_u16_pipe'] = fd_head(6, 8, maxp=(2, u16(1000)), modes=1) + frame(0, 0, b'a' * 1000) + \
        frame(0, 0, b'b' * 1001)
    s['max_payload_invalid'] = fd_head(6, 8, maxp=(3, u32(0xffffffff))) + st
    s['truncated'] = fd_head(5, 8, modes=2) + st + frame(5, 5, b'z' * 40)[:30]
    s['partial_header'] = fd_head(5, 8, modes=1) + st[:200] + b'\x01\x02\x03'
    s['empty_frames'] = fd_head(2, 64, FAIL, hold=8) + frame(0, 0, b'') * 20
    s['huge_length'] = fd_head(5, 8, chunks=(1, 1, 1, 1)) + b'\x00\x80\x01\xff\xff\xff' + b'abc'
    s['cap_u16_alloc'] = fd_head(7, 2, hold=2, chunks=(200, 9, 1, 0), cap16=700) + stream(10)
    return s


# --- hostile -------------------------------------------------------------------

H_CAPS = [256, 1024, 4096, 8192]
H_LIMITS = {'skip': 0, 'disconnect': 1, 'refuse': 2}
H_WAITS = [1, 2, 5, 10]
# op byte -> operation: the first index of each in target_hostile.c's op_of() table
H_OP = {'msg': 0, 'pop': 6, 'release': 9, 'release_raw': 12, 'unrelease': 13, 'tail': 14, 'field': 15,
        'scribble': 16, 'attack': 17, 'wake': 18, 'chan': 19, 'close': 20, 'process': 21, 'flush': 23,
        'sleep': 24, 'remove': 25, 'futex': 0xf8}
HONEST, HOSTILE, BOTH = 0, 1, 2


def hhead(slots, wait=False, socket=False, honest_no_uring=False, lazy=False, remove_end=False, cap=4096,
          limit='skip', wait_ms=1, spin=0, max_held=0, ring_log=2, notify_socket=False):
    """max_held 0: the default (slots - 1); ring entries 2 << ring_log; notify: the default (FUTEX where
    io_uring has futex ops) or SOCKET."""
    b0 = (slots - 1) | (8 if wait else 0) | (16 if socket else 0) | (32 if honest_no_uring else 0) | \
        (64 if lazy else 0) | (128 if remove_end else 0)
    b1 = H_CAPS.index(cap) | (H_LIMITS[limit] << 2) | (H_WAITS.index(wait_ms) << 4) | (spin << 6)
    b2 = max_held | (ring_log << 4) | (0x80 if notify_socket else 0)
    return u8(b0) + u8(b1) + u8(b2)


def hmsg(to, lb=8, hold=0, more=False, retry_honest=False, two=False):
    """lb: length byte: HDR + (lb & 63) * unit (unit: capacity / slots / 32), or 0xc0 | d (d < 32):
    capacity - d, or 0xe0: capacity + 1 (-EMSGSIZE)."""
    fl = (1 if more else 0) | (2 if retry_honest else 0) | (4 if two else 0)
    return u8(H_OP['msg']) + u8(to) + u8(lb) + u8(hold) + u8(fl)


def hop(name, *args):
    return u8(H_OP[name]) + b''.join(args)


def hattack(fdsel, kind):
    """fdsel 0 ctl, 1 data, 2 ring; kind 0..11 (see op_attack)."""
    a = next(v for v in range(256) if (v >> 4) % 3 == fdsel and v % 12 == kind)
    return hop('attack', u8(a))


def hostile_seeds():
    s = {}
    pop, rel, proc = hop('pop', u8(7)), lambda i: hop('release', u8(i)), hop('process')
    # Fan-out with a hostile consumer that plays fair: pops, releases in order.
    s['fanout_fair'] = hhead(8) + b''.join(hmsg(BOTH, 8 + i, hold=20) + pop + rel(0) for i in range(12))
    # A hostile consumer that never releases: SKIP leaves it out at max_held.
    s['skip_never_releases'] = hhead(8, max_held=2) + b''.join(hmsg(BOTH, 10, hold=10) for _ in range(16))
    s['disconnect_at_limit'] = hhead(4, limit='disconnect', max_held=1) + b''.join(
        hmsg(BOTH, 10, hold=10) for _ in range(8))
    s['refuse_retry_honest'] = hhead(4, limit='refuse', max_held=1) + b''.join(
        hmsg(BOTH, 10, hold=10, retry_honest=(i % 2 == 0)) for i in range(8))
    # WAIT with the hostile consumer pinning its share: the producer waits at most its timeout.
    s['wait_pinned'] = hhead(3, wait=True, wait_ms=2, cap=1024) + b''.join(
        hmsg(HOSTILE if i < 2 else HONEST, 40, hold=50) for i in range(6))
    s['socket_transport'] = hhead(8, socket=True, remove_end=True) + b''.join(
        hmsg(BOTH, 20, hold=5) + pop + rel(1) for _ in range(8))
    # Out-of-order, double, forged and premature releases; un-releases of free slots.
    s['release_games'] = hhead(8, max_held=8) + b''.join(hmsg(BOTH, 4, hold=30) for _ in range(5)) + pop + \
        rel(3) + rel(0x81) + hop('release_raw', u8(2), u8(1)) + hop('release_raw', u8(5), u8(0)) + \
        hop('release_raw', u8(0), u8(4 | 3), u32(0xffffffff)) + hop('unrelease', u8(0x80)) + \
        b''.join(hmsg(BOTH, 4, hold=30) for _ in range(5)) + pop + rel(1) + rel(0)
    # Ring indices: skip everything, step back, one ring ahead, then garbage (removed: PROTOCOL).
    s['tail_games'] = hhead(8, ring_log=1) + hmsg(BOTH, 8) + hmsg(HOSTILE, 8) + \
        hop('tail', u8(0), u32(0)) + hmsg(BOTH, 8) + hop('tail', u8(3), u32(1)) + pop + \
        hop('tail', u8(4), u32(0)) + hmsg(BOTH, 8) + hop('tail', u8(2), u32(0x80000000)) + \
        hmsg(BOTH, 8) + hmsg(HONEST, 8)
    # The producer's fields, the ring's identity and a forged entry.
    s['ring_fields'] = hhead(8) + hmsg(BOTH, 8) + b''.join(
        hop('field', u8(w), u32(0xdeadbeef ^ w)) for w in range(10)) + hmsg(BOTH, 8) + pop + \
        hop('scribble', u16(0), u8(255), u8(0xff)) + hop('scribble', u16(192), u8(200), u8(0)) + \
        hmsg(BOTH, 8) + hmsg(HONEST, 8)
    # Every attack on every memfd.
    s['attacks'] = hhead(4, cap=1024) + hmsg(BOTH, 8, hold=100) + pop + b''.join(
        hattack(f, k) for f in range(3) for k in range(12)) + hmsg(BOTH, 8) + hmsg(HONEST, 8)
    # Wake socket: junk, empty, flood, fds, blocking flag, tiny buffers, shutdowns; then WAIT.
    s['wake_socket'] = hhead(2, wait=True, wait_ms=5, cap=1024, max_held=1) + hmsg(HOSTILE, 0xc0 | 0x1f) + \
        b''.join(hop('wake', u8(m), u8(n)) for m, n in [(0, 20), (1, 10), (2, 1), (3, 3), (4, 0), (5, 1),
                                                         (6, 0), (7, 0)]) + \
        b''.join(hmsg(HONEST, 0xc0 | 0x1f, hold=100) for _ in range(3))
    # Channel: junk, empty, flood, fds; then it stops writing (a hang-up).
    s['chan_then_hangup'] = hhead(4, wait=True, wait_ms=2) + hmsg(BOTH, 8) + b''.join(
        hop('chan', u8(m), u8(n)) for m, n in [(0, 30), (1, 10), (2, 0), (3, 1), (4, 0), (5, 0)]) + \
        proc + hmsg(BOTH, 8) + hop('chan', u8(8), u8(0)) + hmsg(HONEST, 8) + proc + hmsg(BOTH, 8)
    # Closes: the ring mapping goes (its records stay), then the wake socket, then it hangs up.
    s['close_in_steps'] = hhead(8) + hmsg(BOTH, 8, hold=50) + pop + hop('close', u8(3)) + \
        hmsg(BOTH, 8) + hop('close', u8(1)) + hop('close', u8(2)) + hmsg(BOTH, 8) + hop('close', u8(0)) + \
        proc + hmsg(BOTH, 8)
    # It never reads its SETUP; removed by the application at the end.
    s['lazy_never_reads'] = hhead(4, lazy=True, remove_end=True) + b''.join(
        hmsg(BOTH, 12, hold=10) for _ in range(6)) + hop('flush') + hop('sleep', u8(20))
    s['removed_midway'] = hhead(8, honest_no_uring=True, spin=1) + hmsg(BOTH, 8) + pop + hop('remove') + \
        hmsg(BOTH, 8) + hop('remove') + hmsg(HONEST, 8, more=True) + hop('flush')
    s['full_capacity'] = hhead(1, cap=256, spin=2) + hmsg(HONEST, 0xc0) + hmsg(HOSTILE, 0xe0) + \
        hmsg(BOTH, 0xc0, two=True)
    # Futex calls on the words it maps: wakes, a wait that cannot sleep, FUTEX_WAKE_OP (must not write
    # the control block), its ring's words; a requeue of the producer's wait given back at once. Then
    # WAITs that the honest consumer's releases must end.
    fx = lambda mode, arg=0: hop('futex', u8(mode), u8(arg))
    s['futex_words'] = hhead(3, wait=True, wait_ms=10, cap=1024) + hmsg(HOSTILE, 0xc0) + hmsg(HONEST, 0xc0) + \
        fx(0) + fx(3, 32) + fx(5) + fx(6, 1) + fx(6, 2) + fx(7) + fx(1) + fx(2) + pop + rel(0) + \
        hmsg(HONEST, 0xc0, hold=255) + hmsg(HONEST, 0xc0, hold=255) + hmsg(HONEST, 0xc0)
    s['futex_words_socket'] = hhead(3, wait=True, wait_ms=10, cap=1024, notify_socket=True) + \
        hmsg(HOSTILE, 0xc0) + hmsg(HONEST, 0xc0) + fx(0) + fx(1) + fx(4, 32) + pop + rel(0) + \
        hmsg(HONEST, 0xc0, hold=255) + hmsg(HONEST, 0xc0)
    return s


# --- protocol ------------------------------------------------------------------
# target_protocol.c: [cfg] [creds x 6] then operations.

P_SEND, P_RAW, P_CONNECT, P_HANGUP, P_DIE, P_DELIVER, P_RESPAWN, P_TIME = 0, 2, 3, 4, 5, 6, 7, 8
P_SOCKET, P_WRITABLE, P_PRODUCER, P_BULK, P_TIMER, P_FAULT = 9, 10, 11, 13, 14, 15
# op selectors of a structured send
PS_REGISTER, PS_SUBSCRIBE, PS_STATUS, PS_INTRODUCED, PS_GONE, PS_REATTACH_P, PS_REATTACH_C, PS_UNREGISTER = range(8)
PS_TO_CLIENT, PS_UNKNOWN = 8, 9
# pool names: the table of target_protocol.c
P_NAMES = ['pool', 'mining.jobs', 'sv2-templates', 'X_1', '..', 'a', '0123456789', 'pool2']
P_CAPS = [0, 1, 4096, 65536, 1 << 20, 1 << 32, (1 << 32) + 1]
P_SLOTS = [1, 8, 64, 0, 65, 2, 31]
P_ALLOW = [0, 1000, 1001, 1002]
# fd specs: kind | variant << 4
FD_OK = 0x00                # a valid control block / ring (ring: 16 entries with FD_RING16)
FD_RING16 = 0x30
FD_OTHER_KIND, FD_CORRUPT, FD_SEALS, FD_SIZE, FD_NOSEAL, FD_RDONLY = 6, 7, 8, 9, 10, 11
FD_PIPE, FD_DEVNULL, FD_SOCKET, FD_DIR = 12, 13, 14, 15   # FD_RDONLY | 0x10: write-only; FD_DIR | 0x10: a plain file
# process indices (pids 4001..4006); default uid: 1000, 1000, 1001, 0, 1002, 1001
PROC_A, PROC_B, PROC_C, PROC_ROOT, PROC_E, PROC_F = range(6)


def p_head(timeout=0, token=0, creds=(0, 0, 0, 0, 0, 0)):
    """timeout: 0 default (5000 ms), 1: 100 ms, 2: 1000 ms, 3: 30000 ms."""
    return u8(timeout | token << 2) + bytes(creds)


def p_name(n):
    if isinstance(n, int):
        return u8(n)                       # 0..7: the table
    if n.startswith('bulk-'):
        return u8(8) + u8(int(n[5:]))
    if n in P_NAMES:
        return u8(P_NAMES.index(n))
    raise ValueError(n)


def p_send(conn, sel, body=b'', seq=1, mut=b'\x00', fds=b''):
    return u8(P_SEND) + u8(conn) + u8(sel) + u8(seq) + body + mut + fds


def p_register(conn, name, cap=65536, slots=8, uids=(), gids=(), region=0, seq=1, fd=FD_OK, mut=b'\x00',
               reattach=False, policy=0):
    body = p_name(name) + u8(P_CAPS.index(cap)) + u8(P_SLOTS.index(slots)) + u8(policy)
    body += u8(len(uids) | len(gids) << 4)
    body += b''.join(u8(P_ALLOW.index(x)) for x in uids) + b''.join(u8(P_ALLOW.index(x)) for x in gids)
    body += u8(region)
    return p_send(conn, PS_REATTACH_P if reattach else PS_REGISTER, body, seq, mut, u8(fd))


def p_subscribe(conn, name, seq=2):
    return p_send(conn, PS_SUBSCRIBE, p_name(name), seq)


def p_unregister(conn, name, seq=3):
    return p_send(conn, PS_UNREGISTER, p_name(name), seq)


def p_status(conn, seq=4):
    return p_send(conn, PS_STATUS, b'', seq)


def p_introduced(conn, holder=1, mult=0, token=0, seq=5, ring=FD_RING16, error=None):
    """token: the n-th latest INTRODUCE token; error: an index into the -errno table instead."""
    if error is not None:
        return p_send(conn, PS_INTRODUCED, u8(token) + u8(3) + u8(error), seq)
    a = (holder - 1) + 31 * mult
    return p_send(conn, PS_INTRODUCED, u8(token) + u8(0) + u8(a), seq, b'\x00', u8(ring))


def p_consumer_gone(conn, name, pick=0, reason=1, held=0, seq=6):
    return p_send(conn, PS_GONE, p_name(name) + u8(pick) + u8(reason) + u8(held), seq)


def p_reattach_consumer(conn, name, pick=None, holder=1, pid_proc=None, ring=None, seq=7):
    """pick: a consumer record of the pool (its id, holder, pid), else id = holder."""
    body = p_name(name)
    if pick is not None:
        body += u8(pick)
    else:
        body += u8(0x80) + u8(0) + u8(holder - 1)
    body += u8(pid_proc if pid_proc is not None else 11)
    body += u8(1 if ring is not None else 0)
    return p_send(conn, PS_REATTACH_C, body, seq, b'\x00', u8(ring) if ring is not None else b'')


def p_connect(conn, proc):
    return u8(P_CONNECT) + u8(conn) + u8(proc)


def p_publish(name_idx, consumer=0, slot=0, wake=False):
    """The producer of table pool name_idx publishes slot to one of its consumers."""
    return u8(P_PRODUCER) + u8(name_idx) + u8(3) + u8(consumer) + u8(slot | (0x80 if wake else 0))


def p_socket(conn, fail=0, room=0, wantw_fail=False):
    """fail: 0 ok, 1 EAGAIN, 2 EPIPE, 3 ECONNRESET, 4 ENOBUFS; room: index into the target's table."""
    return u8(P_SOCKET) + u8(conn) + u8(fail | room << 3 | (0x80 if wantw_fail else 0))


def p_time(ms):
    return u8(P_TIME) + u16(ms)


def protocol_seeds():
    s = {}
    A, B, C, R = PROC_A, PROC_B, PROC_C, PROC_ROOT
    conv = (p_connect(0, A) + p_connect(1, B) + p_connect(2, R) +
            p_register(0, 'pool') + p_subscribe(1, 'pool') + p_introduced(0, holder=1) +
            p_status(2) + p_status(1))
    # The whole conversation: register, subscribe, introduced, status, the
    # consumer's process dies holding two slots (reclaim), unregister.
    s['conversation'] = p_head() + conv + p_publish(0, 0, 0) + p_publish(0, 0, 3, wake=True) + \
        u8(P_DIE) + u8(B) + u8(P_DELIVER) + u8(0x80) + p_status(2) + p_unregister(0, 'pool')
    # A second consumer, removed by its producer (CONSUMER_GONE), then the
    # producer unregisters: POOL_GONE to the other.
    s['consumer_gone'] = p_head() + conv + p_connect(3, PROC_E) + p_register(0, 'mining.jobs', uids=[1002]) + \
        p_subscribe(3, 'mining.jobs') + p_introduced(0, holder=2, mult=1) + p_consumer_gone(0, 'mining.jobs') + \
        p_subscribe(3, 'mining.jobs', seq=9) + p_introduced(0, holder=3) + p_unregister(0, 'mining.jobs')
    # The producer refuses (-EMFILE), answers late (timed out), never answers.
    s['refused_and_timeout'] = p_head(timeout=1) + p_connect(0, A) + p_connect(1, B) + p_register(0, 'pool') + \
        p_subscribe(1, 'pool') + p_introduced(0, error=0) + p_subscribe(1, 'pool', seq=8) + p_time(150) + \
        p_introduced(0, holder=4) + p_subscribe(1, 'pool', seq=9) + u8(P_TIMER) + p_time(50) + p_status(1)
    # Access: another uid is refused, allowed by uid, by gid; root sees every pool.
    s['access'] = p_head() + p_connect(0, A) + p_connect(1, C) + p_connect(2, PROC_E) + p_connect(3, R) + \
        p_register(0, 'pool') + p_subscribe(1, 'pool') + p_register(0, 'pool2', uids=[1001]) + \
        p_subscribe(1, 'pool2') + p_register(0, 'a', gids=[1000]) + p_subscribe(2, 'a') + p_status(1) + \
        p_status(3) + p_subscribe(3, 'pool') + p_unregister(1, 'pool')
    # The producer dies: its consumers are told POOL_GONE, pending subscribers
    # -ENOENT, and another producer takes the name over.
    s['producer_dies'] = p_head() + conv + p_subscribe(1, 'pool', seq=20) + u8(P_DIE) + u8(A) + \
        p_connect(4, PROC_E) + p_register(4, 'pool') + u8(P_DELIVER) + u8(0x80) + p_register(4, 'pool', seq=21) + \
        p_status(2)
    # A broker restart as the clients see it: the producer re-attaches its pool
    # and its consumer (with the ring), the consumer asks before and after.
    s['reattach'] = p_head() + p_connect(0, A) + p_connect(1, B) + \
        p_register(0, 'pool', reattach=True) + p_reattach_consumer(1, 'pool', holder=1, pid_proc=B) + \
        p_reattach_consumer(0, 'pool', holder=1, pid_proc=B, ring=FD_RING16) + \
        p_reattach_consumer(1, 'pool', pick=0) + p_reattach_consumer(1, 'pool', pick=0, seq=11) + \
        p_publish(0, 0, 1) + p_publish(0, 0, 2) + u8(P_DIE) + u8(B) + u8(P_DELIVER) + u8(0x80) + p_status(0)
    # The same producer on a new connection (it reconnected first): the pool
    # moves, its consumers stay; then pid reuse: a new process with the old pid.
    s['same_producer_reconnects'] = p_head() + conv + p_connect(3, A) + p_register(3, 'pool') + \
        p_status(3) + u8(P_HANGUP) + u8(0) + p_status(3) + u8(P_DIE) + u8(A) + u8(P_RESPAWN) + u8(A) + u8(0) + \
        p_connect(4, A) + p_register(4, 'pool') + u8(P_DELIVER) + u8(0x80) + p_register(4, 'pool', seq=30)
    # Eight malformed messages and the client is gone.
    bad = b''
    for i in range(8):
        bad += p_send(1, PS_SUBSCRIBE, u8(9), seq=40 + i)  # an empty name
    s['eight_bad'] = p_head() + p_connect(0, A) + p_connect(1, B) + p_register(0, 'pool') + bad + p_status(0)
    # Wrong fds: every kind on REGISTER and on INTRODUCED.
    wrong = b''
    # seals: each one missing (bits: 1 SHRINK, 2 GROW, 4 FUTURE_WRITE, 8 SEAL)
    for k in [FD_OTHER_KIND, FD_CORRUPT, FD_CORRUPT | 0x30, FD_SEALS | 0xe0, FD_SEALS | 0xd0, FD_SEALS | 0xb0,
              FD_SEALS | 0x70, FD_SIZE, FD_NOSEAL, FD_PIPE, FD_DEVNULL, FD_SOCKET, FD_DIR, FD_DIR | 0x10,
              FD_RDONLY | 0x10]:
        wrong += p_register(2, 'X_1', fd=k, seq=50 + k)
    wrong += p_register(2, 'X_1', fd=FD_RDONLY, seq=70) + p_unregister(2, 'X_1')
    ring_wrong = b''
    for i, k in enumerate([FD_OTHER_KIND, FD_CORRUPT, FD_CORRUPT | 0x50, FD_SEALS, FD_SEALS | 0x30, FD_SIZE,
                           FD_SIZE | 0x10, FD_NOSEAL, FD_RDONLY, FD_PIPE]):
        ring_wrong += p_subscribe(1, 'pool', seq=80 + i) + p_introduced(0, holder=1 + i, ring=k, seq=90 + i)
    s['wrong_fds'] = p_head() + p_connect(0, A) + p_connect(1, B) + p_connect(2, C) + p_register(0, 'pool') + \
        wrong + ring_wrong
    # The env fails: a consumer's process watch (-ENOMEM: SUBSCRIBED says so;
    # -ESRCH: the consumer is gone, no reply), a new client's watch, and the
    # loop refuses a connection before it becomes a client.
    s['watch_faults'] = p_head() + conv + p_subscribe(1, 'pool', seq=30) + u8(P_FAULT) + u8(0) + \
        p_introduced(0, holder=2, seq=31) + p_subscribe(1, 'pool', seq=32) + u8(P_FAULT) + u8(2) + \
        p_introduced(0, holder=3, seq=33) + u8(P_FAULT) + u8(1) + p_connect(5, PROC_E) + u8(P_FAULT) + u8(4) + \
        p_connect(5, PROC_E) + p_status(5)
    # STATUS that does not fit at once: paused, resumed when writable.
    s['status_paused'] = p_head() + conv + p_register(0, 'pool2') + p_register(0, 'a') + \
        p_socket(2, room=4) + p_status(2) + p_register(0, '0123456789') + u8(P_WRITABLE) + u8(2) + \
        p_socket(2, fail=1) + u8(P_WRITABLE) + u8(2) + p_socket(2) + u8(P_WRITABLE) + u8(2) + p_status(2)
    # Sockets that fill up or break: the broker drops the client, never blocks.
    s['full_sockets'] = p_head() + conv + p_socket(1, fail=1) + p_subscribe(3, 'pool') + p_connect(3, PROC_B) + \
        p_subscribe(3, 'pool') + p_socket(0, fail=2) + p_subscribe(3, 'pool', seq=60) + p_status(3)
    # Limits: 257 pools (-ENOSPC); 1025 connections (refused); 31 subscriptions
    # in flight for one pool (-EMFILE) and 9 for one client (-EAGAIN).
    s['limit_pools'] = p_head() + p_connect(0, A) + u8(P_BULK) + u8(0) + u16(260) + p_status(0) + \
        p_unregister(0, 'bulk-007') + p_register(0, 'pool')
    s['limit_clients'] = p_head() + u8(P_BULK) + u8(1) + u16(1030) + p_connect(0, A) + p_connect(1, B) + \
        u8(P_BULK) + u8(3) + u16(0) + p_connect(1, B) + p_status(1)
    s['limit_pending'] = p_head() + p_connect(0, A) + u8(P_BULK) + u8(0) + u16(2) + u8(P_BULK) + u8(1) + u16(40) + \
        u8(P_BULK) + u8(2) + u16(33) + u8(0xf0) + u8(P_BULK) + u8(2 | 8) + u16(9) + u8(0xf1) + p_status(0) + \
        p_time(6000)
    # 31 consumers in one pool (its producer answers every introduction), STATUS
    # lists them all; a 32nd re-attached by the producer replaces the one on
    # its holder bit; they die together, each ring released.
    s['limit_consumers'] = p_head() + p_connect(0, A) + u8(P_BULK) + u8(1 | 1 << 3) + u16(40) + \
        p_register(0, 'pool') + u8(P_BULK) + u8(2) + u16(33) + u8(0) + u8(P_BULK) + u8(4) + u16(40) + \
        p_publish(0, 3, 5) + p_publish(0, 30, 6, wake=True) + p_status(0) + u8(P_BULK) + u8(5) + u16(1) + u8(0) + \
        p_status(0, seq=5) + u8(P_DIE) + u8(B) + u8(P_DELIVER) + u8(0x80) + p_status(0, seq=6)
    # Raw bytes: short, wrong magic, a broker-to-client opcode, an unknown one,
    # the right size with a bad header length, too long, truncated.
    hdr = u32(0x6b726273) + u16(1) + u16(3) + u32(16) + u32(7)
    raw = b''
    for data, nfds, fl in [(b'', 0, 0), (b'\x01\x02\x03', 1, 0), (hdr[:15], 0, 0), (b'\x00' * 16, 0, 0),
                           (hdr[:4] + u16(2) + hdr[6:], 0, 0), (hdr[:6] + u16(64) + hdr[8:], 0, 0),
                           (hdr[:6] + u16(200) + hdr[8:], 0, 0), (hdr[:8] + u32(17) + hdr[12:], 0, 0),
                           (hdr + b'\x00', 0, 0), (hdr, 0, 1), (hdr, 2, 2), (hdr, 0, 0)]:
        raw += u8(P_RAW) + u8(1) + u16(len(data)) + data + u8(nfds) + u8(fl) + b''.join(u8(FD_OK) for _ in range(nfds))
    s['raw'] = p_head() + p_connect(1, B) + raw
    return s


# --- regression inputs (fuzz/regress/) ----------------------------------------
# Minimal inputs for the library bugs the targets found; see fuzz/regress/README.md.


def regress_inputs():
    r = {}
    # descriptor: the same descriptor opened twice for one holder gives two
    # slices; releasing both refuses the second (-EALREADY) but the handle
    # still counts it open: region_detach() is -EBUSY forever.
    r[('descriptor', 'double_open_detach_ebusy')] = desc_head(0, [8] * 8) + \
        record(PATCH_ALL, desc(slot=0)) + record(PATCH_ALL, desc(slot=0))
    # cross_process: an event-loop consumer (prepare_wait, poll(consumer_fd),
    # recv(c, s, 0)) is woken once through the wake eventfd, which nothing
    # ever drains: consumer_fd() stays readable and the loop spins.
    sb = 1 << 4  # event loop for consumer 0, default spin
    head = u8(XCAPS.index(256)) + u8(0) + u8(0) + u8(0) + u8(3) + u8(0) + u8(sb)  # 1 slot, WAIT
    r[('cross_process', 'event_loop_eventfd_never_drained')] = head + b''.join(
        xmsg(100, hold_units=50) for _ in range(12))
    # hostile: releases are not latched. The hostile consumer releases a slot
    # in the middle of the back run (it stays referenced), gets a new slice
    # since it is below max_held again, then takes the release back (its
    # released[] record no longer says the generation): it pins 4 slots with
    # max_held 3. Repeated, it pins every slot.
    r[('hostile', 'unrelease_pins_past_max_held')] = hhead(8, max_held=3) + b''.join(
        hmsg(HOSTILE, 8) for _ in range(3)) + hop('pop', u8(7)) + hop('release', u8(1)) + hmsg(HOSTILE, 8) + \
        hop('unrelease', u8(1)) + hop('pop', u8(7))
    # hostile: with SV2SHM_NOTIFY_FUTEX the producer sleeps in an io_uring FUTEX_WAIT on the control
    # block's release_seq, which every consumer maps. A WAIT that timed out leaves that wait queued;
    # the hostile consumer moves it to a word of its own with FUTEX_CMP_REQUEUE (read access is
    # enough). The producer never queues another (it thinks one is queued), so the honest consumer's
    # FUTEX_WAKE finds no one: the next WAIT sleeps to its deadline (here 10 ms) although the slot came
    # back after 1 ms, and so does every later one (up to the 100 ms sleep slice), after the hostile
    # consumer is gone too.
    # hostile: a consumer that releases out of order (exactly as sv2shm_slice_release() would) gets
    # past max_held 3 with the held_hint kept in slot_peers and decremented when a slot is dropped:
    # the recount at the 4th publish already left out the released middle slot, and dropping it later
    # takes it off the hint a second time, so the hint stays below the real count.
    r[('hostile', 'held_hint_drop_undercounts')] = hhead(8, max_held=3) + b''.join(
        hmsg(HOSTILE, 8) for _ in range(3)) + hop('pop', u8(7)) + hop('release', u8(1)) + hmsg(HOSTILE, 8) + \
        hop('pop', u8(7)) + hop('release', u8(0)) + hmsg(HOSTILE, 8) + hmsg(HOSTILE, 8)
    r[('hostile', 'futex_requeue_steals_producer_wait')] = hhead(3, wait=True, wait_ms=10, cap=1024) + \
        hmsg(HOSTILE, 0xc0) + hmsg(HONEST, 0xc0) + hop('pop', u8(7)) + hop('release', u8(0)) + \
        hop('futex', u8(1), u8(0)) + hmsg(HONEST, 0xc0, hold=255) + hmsg(HONEST, 0xc0)
    # protocol: broker_handle_message() decides its return value before reap(): a client that is
    # given up on while another one is cleaned up at the end of its own call (here a POOL_GONE that
    # does not fit) is freed and env->close()d, but the call returns 0 ("go on reading"), not -EPIPE.
    # P (conn 0) consumes Q's pool; Q (conn 1) subscribes to P's pool; both sockets break; P answers
    # INTRODUCED: the SUBSCRIBED to Q fails (Q given up on), P gets no reply; cleaning Q up removes
    # its pool and sends P a POOL_GONE, which fails: P is freed, and its call returns 0.
    r[('protocol', 'handle_message_returns_0_for_freed_client')] = p_head() + p_connect(0, PROC_A) + \
        p_connect(1, PROC_B) + p_register(0, 'pool') + p_register(1, 'pool2') + p_subscribe(0, 'pool2', seq=10) + \
        p_introduced(1, holder=1, seq=11) + p_subscribe(1, 'pool', seq=12) + p_socket(1, fail=2) + \
        p_socket(0, fail=2) + p_introduced(0, holder=2, seq=13)
    return r


TARGETS = {
    'faster': faster_seeds,
    'slower': slower_seeds,
    'cross_process': cross_process_seeds,
    'descriptor': descriptor_seeds,
    'frame_decoder': frame_decoder_seeds,
    'hostile': hostile_seeds,
    'protocol': protocol_seeds,
}


def main(argv):
    if argv[1:] == ['--regress']:
        for (target, name), data in sorted(regress_inputs().items()):
            d = os.path.join(HERE, 'regress', target)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, name), 'wb') as f:
                f.write(data)
            print(f'regress/{target}/{name}: {len(data)} bytes')
        return 0
    names = argv[1:] or list(TARGETS)
    for name in names:
        seeds = TARGETS[name]()
        d = os.path.join(HERE, 'corpus', name)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        total = 0
        for seed_name, data in sorted(seeds.items()):
            with open(os.path.join(d, seed_name), 'wb') as f:
                f.write(data)
            total += len(data)
        print(f'{name}: {len(seeds)} seeds, {total} bytes')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
