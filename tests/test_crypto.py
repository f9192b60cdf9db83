"""The vault's cryptography on its own: envelopes, blind indexes, passwords, the key ring."""

from __future__ import annotations

import json
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from vault.crypto.blind_index import email_index, normalise_email
from vault.crypto.envelope import (
    KEY_BYTES,
    NONCE_BYTES,
    DataKey,
    DecryptionError,
    field_aad,
    unwrap_key,
    wrap_key,
)
from vault.crypto.keyring import KeyRing, KeyRingError
from vault.crypto.passwords import Passwords

GENERIC_MESSAGE = "ciphertext could not be decrypted"
PLACE = {"table": "profile", "row_id": "a" * 32, "field": "email"}


def _fresh_key() -> DataKey:
    return DataKey(DataKey.generate())


def _assert_generic_failure(attempt: Callable[[], object]) -> None:
    """The attempt fails with exactly the one generic decryption error."""
    with pytest.raises(DecryptionError) as caught:
        attempt()
    assert type(caught.value) is DecryptionError
    assert str(caught.value) == GENERIC_MESSAGE
    # Nothing from the underlying library leaks through as the cause.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


# -- envelope: data keys --------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [b"", b"alice@example.org", "Zoë Ångström · 東京".encode(), secrets.token_bytes(4096)],
    ids=["empty", "ascii", "unicode", "4k-random"],
)
def test_sealed_field_opens_to_the_same_bytes(plaintext: bytes) -> None:
    key = _fresh_key()
    sealed = key.encrypt(plaintext, **PLACE)
    assert plaintext not in sealed or plaintext == b""
    assert sealed[:1] == b"\x01"
    assert len(sealed) == 1 + NONCE_BYTES + len(plaintext) + 16
    assert key.decrypt(sealed, **PLACE) == plaintext


def test_same_plaintext_seals_differently_each_time() -> None:
    key = _fresh_key()
    first = key.encrypt(b"same value", **PLACE)
    second = key.encrypt(b"same value", **PLACE)
    assert first != second
    assert key.decrypt(first, **PLACE) == key.decrypt(second, **PLACE) == b"same value"


def test_every_flipped_bit_of_a_ciphertext_is_refused() -> None:
    """Version byte, nonce, body and tag: one flipped bit anywhere and it will not open."""
    key = _fresh_key()
    sealed = key.encrypt(b"+31 6 12345678", **PLACE)
    regions = {
        "version": range(0, 1),
        "nonce": range(1, 1 + NONCE_BYTES),
        "body": range(1 + NONCE_BYTES, len(sealed) - 16),
        "tag": range(len(sealed) - 16, len(sealed)),
    }
    assert all(len(r) > 0 for r in regions.values())
    tried = 0
    for positions in regions.values():
        for position in positions:
            for bit in range(8):
                tampered = bytearray(sealed)
                tampered[position] ^= 1 << bit
                _assert_generic_failure(
                    lambda t=bytes(tampered): key.decrypt(t, **PLACE)
                )
                tried += 1
    assert tried == len(sealed) * 8
    # The untouched ciphertext still opens, so the failures above are the flips.
    assert key.decrypt(sealed, **PLACE) == b"+31 6 12345678"


@pytest.mark.parametrize(
    "moved_to",
    [
        {"table": "profile", "row_id": "b" * 32, "field": "email"},
        {"table": "profile", "row_id": "a" * 32, "field": "phone"},
        {"table": "global_rules", "row_id": "a" * 32, "field": "email"},
    ],
    ids=["another-row", "another-field", "another-table"],
)
def test_ciphertext_moved_to_another_place_is_refused(moved_to: dict[str, str]) -> None:
    key = _fresh_key()
    sealed = key.encrypt(b"alice@example.org", **PLACE)
    _assert_generic_failure(lambda: key.decrypt(sealed, **moved_to))
    assert key.decrypt(sealed, **PLACE) == b"alice@example.org"


def test_ciphertexts_swapped_between_two_rows_are_refused() -> None:
    key = _fresh_key()
    alice = {"table": "profile", "row_id": "1" * 32, "field": "name"}
    bob = {"table": "profile", "row_id": "2" * 32, "field": "name"}
    sealed_alice = key.encrypt(b"Alice", **alice)
    sealed_bob = key.encrypt(b"Bob", **bob)
    _assert_generic_failure(lambda: key.decrypt(sealed_alice, **bob))
    _assert_generic_failure(lambda: key.decrypt(sealed_bob, **alice))
    assert key.decrypt(sealed_alice, **alice) == b"Alice"
    assert key.decrypt(sealed_bob, **bob) == b"Bob"


def test_ciphertexts_swapped_between_two_fields_are_refused() -> None:
    key = _fresh_key()
    email = {**PLACE, "field": "email"}
    phone = {**PLACE, "field": "phone"}
    sealed_email = key.encrypt(b"alice@example.org", **email)
    sealed_phone = key.encrypt(b"+31 6 12345678", **phone)
    _assert_generic_failure(lambda: key.decrypt(sealed_email, **phone))
    _assert_generic_failure(lambda: key.decrypt(sealed_phone, **email))


def test_ciphertext_of_one_person_does_not_open_with_another_persons_key() -> None:
    alice, bob = _fresh_key(), _fresh_key()
    sealed = alice.encrypt(b"Alice's address", **PLACE)
    _assert_generic_failure(lambda: bob.decrypt(sealed, **PLACE))
    assert alice.decrypt(sealed, **PLACE) == b"Alice's address"


def test_every_kind_of_failure_raises_the_same_error_and_message() -> None:
    key, other = _fresh_key(), _fresh_key()
    sealed = key.encrypt(b"x", **PLACE)
    failures: list[DecryptionError] = []
    for attempt in (
        lambda: other.decrypt(sealed, **PLACE),
        lambda: key.decrypt(sealed, **{**PLACE, "row_id": "c" * 32}),
        lambda: key.decrypt(sealed, **{**PLACE, "field": "name"}),
        lambda: key.decrypt(sealed[:-1], **PLACE),
        lambda: key.decrypt(b"\x02" + sealed[1:], **PLACE),
        lambda: key.decrypt(b"", **PLACE),
    ):
        with pytest.raises(DecryptionError) as caught:
            attempt()
        failures.append(caught.value)
    assert {(type(f), str(f), f.args) for f in failures} == {
        (DecryptionError, GENERIC_MESSAGE, (GENERIC_MESSAGE,))
    }


def test_a_hundred_thousand_encryptions_use_a_hundred_thousand_nonces() -> None:
    key = _fresh_key()
    count = 100_000
    nonces = {
        key.encrypt(b"", **PLACE)[1 : 1 + NONCE_BYTES] for _ in range(count)
    }
    assert len(nonces) == count
    assert all(len(n) == NONCE_BYTES for n in nonces)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: b"",
        lambda s: s[:1],
        lambda s: s[: 1 + NONCE_BYTES],
        lambda s: s[: 1 + NONCE_BYTES + 15],
        lambda s: s[:-1],
        lambda s: s[:-16],
        lambda s: s + b"\x00",
        lambda s: b"\x00" * len(s),
        lambda s: b"\x01" + b"\x00" * (len(s) - 1),
        lambda s: b"\x01" + secrets.token_bytes(len(s) - 1),
        lambda s: secrets.token_bytes(3),
        lambda s: b"\x02" + s[1:],
        lambda s: s[1:],
    ],
    ids=["empty", "version-only", "no-tag", "short-tag", "one-byte-short", "no-body-tag-cut",
         "trailing-byte", "zeros", "version-then-zeros", "version-then-random",
         "random-3-bytes", "unknown-version", "version-stripped"],
)
def test_truncated_or_garbage_input_fails_cleanly(mangle: Callable[[bytes], bytes]) -> None:
    key = _fresh_key()
    sealed = key.encrypt(b"a value of a few bytes", **PLACE)
    damaged = mangle(sealed)
    assert damaged != sealed
    _assert_generic_failure(lambda: key.decrypt(damaged, **PLACE))


def test_data_key_must_be_32_bytes() -> None:
    assert len(DataKey.generate()) == KEY_BYTES
    assert DataKey.generate() != DataKey.generate()
    for size in (0, 16, 31, 33, 64):
        with pytest.raises(ValueError, match="32 bytes"):
            DataKey(bytes(size))


def test_field_aad_names_each_part_and_refuses_nul() -> None:
    base = field_aad("profile", "r1", "email")
    assert base != field_aad("profile", "r1", "phone")
    assert base != field_aad("profile", "r2", "email")
    assert base != field_aad("global_rules", "r1", "email")
    assert field_aad("profile", "r1", "email") == base
    # With NUL as separator refused inside parts, no two triples share an AAD.
    for parts in (("pro\x00file", "r1", "email"), ("profile", "r\x001", "email"),
                  ("profile", "r1", "em\x00ail")):
        with pytest.raises(ValueError, match="NUL"):
            field_aad(*parts)


# -- envelope: wrapped data keys ----------------------------------------------------------


def test_wrapped_data_key_unwraps_for_its_owner_and_kek() -> None:
    kek, raw = secrets.token_bytes(32), DataKey.generate()
    wrapped = wrap_key(kek, "kek-1", "person-a", raw)
    assert raw not in wrapped
    assert unwrap_key(kek, "kek-1", "person-a", wrapped) == raw


def test_wrapped_data_key_moved_to_another_owner_is_refused() -> None:
    kek = secrets.token_bytes(32)
    alice_raw, bob_raw = DataKey.generate(), DataKey.generate()
    alice_wrapped = wrap_key(kek, "kek-1", "person-a", alice_raw)
    bob_wrapped = wrap_key(kek, "kek-1", "person-b", bob_raw)
    _assert_generic_failure(lambda: unwrap_key(kek, "kek-1", "person-b", alice_wrapped))
    _assert_generic_failure(lambda: unwrap_key(kek, "kek-1", "person-a", bob_wrapped))
    assert unwrap_key(kek, "kek-1", "person-b", bob_wrapped) == bob_raw


def test_wrapped_data_key_relabelled_with_another_kek_id_is_refused() -> None:
    """Same KEK bytes, different id: the id is bound in, so it does not open."""
    kek, raw = secrets.token_bytes(32), DataKey.generate()
    wrapped = wrap_key(kek, "kek-old", "person-a", raw)
    _assert_generic_failure(lambda: unwrap_key(kek, "kek-new", "person-a", wrapped))
    assert unwrap_key(kek, "kek-old", "person-a", wrapped) == raw


def test_wrapped_data_key_does_not_open_under_another_kek() -> None:
    kek, other, raw = secrets.token_bytes(32), secrets.token_bytes(32), DataKey.generate()
    wrapped = wrap_key(kek, "kek-1", "person-a", raw)
    _assert_generic_failure(lambda: unwrap_key(other, "kek-1", "person-a", wrapped))


def test_tampered_wrapped_key_is_refused() -> None:
    kek, raw = secrets.token_bytes(32), DataKey.generate()
    wrapped = wrap_key(kek, "kek-1", "person-a", raw)
    for position in (0, 1, len(wrapped) // 2, len(wrapped) - 1):
        tampered = bytearray(wrapped)
        tampered[position] ^= 0x80
        _assert_generic_failure(
            lambda t=bytes(tampered): unwrap_key(kek, "kek-1", "person-a", t)
        )
    _assert_generic_failure(lambda: unwrap_key(kek, "kek-1", "person-a", wrapped[:20]))


# -- blind index --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    ["Alice@Example.ORG", "  alice@example.org", "alice@example.org\n", "\tALICE@EXAMPLE.ORG ",
     "\uff41lice@example.org"],  # the last starts with a full-width 'a' (NFKC folds it)
    ids=["mixed-case", "leading-space", "trailing-newline", "tabs-upper", "full-width"],
)
def test_blind_index_ignores_case_and_surrounding_whitespace(variant: str) -> None:
    key = secrets.token_bytes(32)
    assert normalise_email(variant) == "alice@example.org"
    assert email_index(key, variant) == email_index(key, "alice@example.org")


def test_blind_index_differs_by_key_and_by_address() -> None:
    key, other_key = secrets.token_bytes(32), secrets.token_bytes(32)
    index = email_index(key, "alice@example.org")
    assert len(index) == 32
    assert email_index(other_key, "alice@example.org") != index
    assert email_index(key, "alice@example.net") != index
    assert email_index(key, "bob@example.org") != index
    assert b"alice" not in index


# -- passwords ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords("fast")


def test_password_verifies_against_its_hash(passwords: Passwords) -> None:
    stored = passwords.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert passwords.verify(stored, "correct horse battery staple") is True


def test_wrong_password_is_refused(passwords: Passwords) -> None:
    stored = passwords.hash("correct horse battery staple")
    for attempt in ("Correct horse battery staple", "correct horse battery stapl", "", " " * 8):
        assert passwords.verify(stored, attempt) is False


def test_no_stored_hash_never_verifies_even_with_the_dummy_password(
    passwords: Passwords,
) -> None:
    """With no account, the dummy hash is checked for timing but must never pass."""
    assert passwords.verify(None, "anything at all") is False
    assert passwords.verify(None, "prefvault-dummy-password") is False
    assert passwords.verify("", "prefvault-dummy-password") is False


def test_garbage_stored_hash_is_refused_not_raised(passwords: Passwords) -> None:
    assert passwords.verify("not-an-argon2-hash", "whatever") is False
    assert passwords.verify("$argon2id$v=19$m=1024,t=1,p=1$broken", "whatever") is False


def test_hashes_are_salted(passwords: Passwords) -> None:
    first, second = passwords.hash("same password"), passwords.hash("same password")
    assert first != second
    assert passwords.verify(first, "same password") and passwords.verify(second, "same password")


def test_fast_hash_needs_rehash_under_the_default_profile(passwords: Passwords) -> None:
    stored = passwords.hash("a password")
    assert passwords.needs_rehash(stored) is False
    assert Passwords("default").needs_rehash(stored) is True


def test_unknown_password_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown password hash profile"):
        Passwords("quick")


# -- key ring -----------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_save_writes_an_owner_only_file_in_an_owner_only_folder(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    target = tmp_path / "secrets" / "keyring.json"
    ring.save(target)
    assert target.is_file()
    assert _mode(target) == 0o600
    assert _mode(target.parent) == 0o700
    assert ring.path == target
    # Written atomically: no temporary file is left next to it.
    assert [p.name for p in target.parent.iterdir()] == ["keyring.json"]


def test_save_over_an_existing_file_keeps_it_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "keys" / "keyring.json"
    target.parent.mkdir(mode=0o700)
    target.write_text("{}", encoding="utf-8")
    target.chmod(0o644)
    ring = KeyRing.generate()
    ring.save(target)
    assert _mode(target) == 0o600
    assert KeyRing.load(target).active_kek_id == ring.active_kek_id


def test_load_round_trips_every_key(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    ring.add_kek()
    target = tmp_path / "keys" / "keyring.json"
    ring.save(target)
    loaded = KeyRing.load(target)
    assert loaded.path == target
    assert loaded.keks == ring.keks
    assert len(loaded.keks) == 2
    assert loaded.active_kek_id == ring.active_kek_id
    assert loaded.active_kek == ring.active_kek
    assert loaded.blind_index_key == ring.blind_index_key
    assert loaded.session_key == ring.session_key
    assert [k.kid for k in loaded.signing_keys] == [k.kid for k in ring.signing_keys]
    assert loaded.signing_key.public_bytes() == ring.signing_key.public_bytes()
    assert loaded.to_document() == ring.to_document()
    # And a signature made with the loaded key verifies with the original public key.
    signature = loaded.signing_key.private_key.sign(b"checkpoint")
    ring.signing_key.private_key.public_key().verify(signature, b"checkpoint")


def test_generated_rings_are_independent() -> None:
    first, second = KeyRing.generate(), KeyRing.generate()
    assert first.active_kek != second.active_kek
    assert first.blind_index_key != second.blind_index_key
    assert first.session_key != second.session_key
    assert len({first.active_kek, first.blind_index_key, first.session_key}) == 3


def test_load_of_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "keyring.json"
    with pytest.raises(KeyRingError) as caught:
        KeyRing.load(missing)
    message = str(caught.value)
    assert str(missing) in message
    assert "prefvault init" in message and "VAULT_KEYRING" in message


def test_load_of_invalid_json_is_refused_clearly(tmp_path: Path) -> None:
    target = tmp_path / "keyring.json"
    target.write_text('{"format": "prefvault-keyring/1", ', encoding="utf-8")
    with pytest.raises(KeyRingError, match="is not valid JSON") as caught:
        KeyRing.load(target)
    assert str(target) in str(caught.value)


def _drop(key: str) -> Callable[[dict[str, object]], None]:
    def mutate(doc: dict[str, object]) -> None:
        del doc[key]

    return mutate


def _set(key: str, value: object) -> Callable[[dict[str, object]], None]:
    def mutate(doc: dict[str, object]) -> None:
        doc[key] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_drop("keks"), "missing or malformed entry 'keks'"),
        (_drop("active_kek"), "missing or malformed entry 'active_kek'"),
        (_drop("blind_index_key"), "missing or malformed entry 'blind_index_key'"),
        (_drop("session_key"), "missing or malformed entry 'session_key'"),
        (_drop("format"), "not a prefvault-keyring/1 document"),
        (_set("format", "prefvault-keyring/0"), "not a prefvault-keyring/1 document"),
        (_set("active_kek", "kek-unknown"), "the active KEK is not in the ring"),
        (_set("signing_keys", []), "no signing key"),
        (_set("blind_index_key", "***"), "blind index key is not base64"),
        (_set("session_key", "c2hvcnQ="), "session key must be 32 bytes"),
        (_set("keks", "not a mapping"), "missing or malformed entry"),
    ],
    ids=["no-keks", "no-active", "no-blind-index", "no-session", "no-format", "old-format",
         "unknown-active", "no-signing", "bad-base64", "short-key", "keks-not-mapping"],
)
def test_load_of_an_incomplete_ring_is_refused_clearly(
    tmp_path: Path, mutate: Callable[[dict[str, object]], None], message: str
) -> None:
    ring = KeyRing.generate()
    doc = ring.to_document()
    mutate(doc)
    target = tmp_path / "keyring.json"
    target.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(KeyRingError, match=message.replace("*", r"\*")):
        KeyRing.load(target)


def test_load_of_a_json_array_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "keyring.json"
    target.write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(KeyRingError, match="not a prefvault-keyring/1 document"):
        KeyRing.load(target)


def test_save_without_a_path_is_refused() -> None:
    with pytest.raises(KeyRingError, match="no path"):
        KeyRing.generate().save()


def test_add_kek_makes_a_new_active_kek_and_keeps_the_old(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    old_id, old_kek = ring.active_kek_id, ring.active_kek
    new_id = ring.add_kek()
    assert new_id != old_id
    assert ring.active_kek_id == new_id
    assert len(ring.active_kek) == 32 and ring.active_kek != old_kek
    assert ring.keks[old_id] == old_kek
    assert set(ring.keks) == {old_id, new_id}
    ring.save(tmp_path / "keys" / "keyring.json")
    assert KeyRing.load(tmp_path / "keys" / "keyring.json").active_kek_id == new_id


def test_retire_keks_keeps_the_active_one_and_those_in_use() -> None:
    ring = KeyRing.generate()
    oldest = ring.active_kek_id
    middle = ring.add_kek()
    newest = ring.add_kek()
    assert ring.retire_keks({middle}) == [oldest]
    assert set(ring.keks) == {middle, newest}
    # Nothing in use: only the active one survives, even though nothing uses it.
    assert ring.retire_keks(set()) == [middle]
    assert set(ring.keks) == {newest}
    assert ring.active_kek_id == newest
    assert ring.retire_keks(set()) == []


def test_retire_keks_keeps_everything_while_all_are_in_use() -> None:
    ring = KeyRing.generate()
    first = ring.active_kek_id
    second = ring.add_kek()
    assert ring.retire_keks({first, second}) == []
    assert set(ring.keks) == {first, second}


def test_kek_lookup_rereads_the_file_after_another_process_rotated(tmp_path: Path) -> None:
    target = tmp_path / "keys" / "keyring.json"
    KeyRing.generate().save(target)
    server, operator = KeyRing.load(target), KeyRing.load(target)
    new_id = operator.add_kek()
    operator.save()
    assert new_id not in server.keks
    assert server.kek(new_id) == operator.keks[new_id]


def test_kek_lookup_of_an_unknown_id_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "keys" / "keyring.json"
    ring = KeyRing.generate()
    ring.save(target)
    with pytest.raises(KeyRingError, match="holds no KEK 'kek-gone'"):
        ring.kek("kek-gone")
    unsaved = KeyRing.generate()
    with pytest.raises(KeyRingError, match="holds no KEK"):
        unsaved.kek("kek-gone")

