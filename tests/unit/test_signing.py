from hookline import signing

BODY = b'{"zen": "Keep it logically awesome."}'


def test_signature_of_the_exact_body_verifies() -> None:
    assert signing.verify(["s3cret"], BODY, signing.sign("s3cret", BODY))


def test_any_of_several_secrets_verifies_so_secrets_can_rotate() -> None:
    header = signing.sign("old", BODY)
    assert signing.verify(["new", "old"], BODY, header)
    assert not signing.verify(["new"], BODY, header)


def test_wrong_signature_of_the_right_length_is_refused() -> None:
    good = signing.sign("s3cret", BODY)
    flipped = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert len(flipped) == len(good)
    assert not signing.verify(["s3cret"], BODY, flipped)


def test_a_changed_body_is_refused() -> None:
    assert not signing.verify(["s3cret"], BODY + b" ", signing.sign("s3cret", BODY))


def test_missing_or_legacy_headers_are_refused() -> None:
    legacy = "sha1=" + signing.sign("s3cret", BODY)[len("sha256=") :]
    for header in (None, "", legacy, "sha256=", "sha256=zz"):
        assert not signing.verify(["s3cret"], BODY, header)


def test_uppercase_hex_is_accepted() -> None:
    header = signing.sign("s3cret", BODY)
    assert signing.verify(["s3cret"], BODY, "sha256=" + header[7:].upper())
