"""The connection handshake as a pure state machine: no sockets."""

from __future__ import annotations

import pickle
import random

import pytest

from shoal.comm._handshake import (
    HANDSHAKE_CAP,
    MISSING_TOKEN,
    PEER_WITHOUT_TOKEN,
    WRONG_TOKEN,
    Handshake,
    HandshakeError,
)


def run(initiator: Handshake, acceptor: Handshake, chunk: int = 1 << 20) -> None:
    """Shuttle bytes between both ends (in pieces of ``chunk`` bytes) until both are done
    or one raises."""
    to_acceptor = initiator.start()
    acceptor.start()
    to_initiator = b""
    for _ in range(20):
        if initiator.done and acceptor.done and not to_acceptor and not to_initiator:
            return
        while to_acceptor:
            piece, to_acceptor = to_acceptor[:chunk], to_acceptor[chunk:]
            to_initiator += acceptor.receive(piece)
        while to_initiator:
            piece, to_initiator = to_initiator[:chunk], to_initiator[chunk:]
            to_acceptor += initiator.receive(piece)
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_same_token_authenticates_both_ends(chunk: int) -> None:
    i, a = Handshake(True, "s3cret"), Handshake(False, "s3cret")
    run(i, a, chunk)
    assert i.done and a.done and i.authenticated and a.authenticated


def test_no_token_on_either_end_is_one_exchange_of_hellos() -> None:
    i, a = Handshake(True, None), Handshake(False, None)
    hello = i.start()
    a.start()
    reply = a.receive(hello)
    assert a.done
    assert i.receive(reply) == b""
    assert i.done


def test_acceptor_with_token_refuses_initiator_without_one_and_says_which_credential() -> None:
    i, a = Handshake(True, None), Handshake(False, "s3cret")
    hello = i.start()
    a.start()
    with pytest.raises(HandshakeError) as refused:
        a.receive(hello)
    assert not refused.value.remote
    with pytest.raises(HandshakeError) as told:
        i.receive(a.outgoing)
    assert told.value.remote
    assert str(told.value) == MISSING_TOKEN
    assert "SHOAL_TOKEN" in str(told.value) and "scheduler_file" in str(told.value)


def test_wrong_token_is_caught_by_the_initiator_before_it_sends_anything_else() -> None:
    i, a = Handshake(True, "guess"), Handshake(False, "s3cret")
    hello = i.start()
    a.start()
    challenge = a.receive(hello)
    with pytest.raises(HandshakeError, match="wrong token"):
        i.receive(challenge)
    assert not a.done
    with pytest.raises(HandshakeError) as told:
        a.receive(i.outgoing)  # the initiator's refusal reaches the acceptor
    assert told.value.remote and str(told.value) == WRONG_TOKEN


def test_acceptor_refuses_a_forged_proof() -> None:
    a = Handshake(False, "s3cret")
    a.start()
    attacker = Handshake(True, "s3cret-not")
    a.receive(attacker.start())
    with pytest.raises(HandshakeError, match="wrong token"):
        a.receive(b"\x02" + b"\x00" * 32)
    assert not a.done and a.outgoing.startswith(b"\x03")


def test_reflected_acceptor_proof_is_not_an_initiator_proof() -> None:
    nonce = bytes(range(32))
    a = Handshake(False, "s3cret", nonce=nonce)
    a.start()
    # An attacker replays the acceptor's own proof back to it.
    hello = b"\x01SHOAL\x01\x01" + nonce
    out = a.receive(hello)
    proof = out[-33:]
    with pytest.raises(HandshakeError):
        a.receive(proof)


def test_initiator_with_token_refuses_an_acceptor_without_one() -> None:
    i, a = Handshake(True, "s3cret"), Handshake(False, None)
    hello = i.start()
    a.start()
    reply = a.receive(hello)
    with pytest.raises(HandshakeError) as refused:
        i.receive(reply)
    assert str(refused.value) == PEER_WITHOUT_TOKEN


def test_bytes_after_the_handshake_are_left_for_the_frame_decoder() -> None:
    i, a = Handshake(True, "k"), Handshake(False, "k")
    a.start()
    challenge = a.receive(i.start())
    proof = i.receive(challenge)
    assert a.receive(proof + b"FRAMES") == b""
    assert a.done and a.trailing == b"FRAMES"


def test_version_mismatch_is_refused_with_a_fix() -> None:
    a = Handshake(False, None)
    a.start()
    with pytest.raises(HandshakeError, match="same shoal version"):
        a.receive(b"\x01SHOAL\x09\x00" + bytes(32))


@pytest.mark.parametrize("seed", range(50))
def test_random_bytes_are_refused_within_the_cap(seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(rng.randrange(1, 4 * HANDSHAKE_CAP))
    for token in (None, "s3cret"):
        a = Handshake(False, token)
        a.start()
        with pytest.raises(HandshakeError):
            a.receive(data)
        assert not a.done
        assert len(a._buf) <= HANDSHAKE_CAP


def test_a_frame_with_a_huge_length_prefix_is_not_a_handshake() -> None:
    # What a peer speaking the frame protocol directly would send: u32 count, u64 length.
    frame = (1).to_bytes(4, "little") + (1 << 40).to_bytes(8, "little") + b"\x90" * 64
    a = Handshake(False, None)
    a.start()
    with pytest.raises(HandshakeError, match="does not speak shoal"):
        a.receive(frame)
    assert len(a._buf) <= HANDSHAKE_CAP


def test_a_handshake_that_never_ends_is_refused_at_the_cap() -> None:
    a = Handshake(False, "k")
    a.start()
    # A refusal record announcing 255 bytes, fed one byte short, then junk beyond: the
    # acceptor never holds more than the cap.
    with pytest.raises(HandshakeError):
        for _ in range(HANDSHAKE_CAP * 2):
            a.receive(b"\x01")
    assert len(a._buf) <= HANDSHAKE_CAP


def test_handshake_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(HandshakeError("why", True)))
    assert err.reason == "why" and err.remote
