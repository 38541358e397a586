"""The upload helpers the app uses and the safe-name rule (attnres.safety)."""

from __future__ import annotations

import stat
import tempfile

import pytest

from attnres import CheckpointError, load_model
from attnres.safety import check_upload_size, safe_name, save_upload, upload_suffix

HOSTILE_NAMES = [
    "../../evil.pt",
    "/etc/evil.pt",
    "..\\..\\evil.pt",
    "a/b/../../../evil.safetensors",
    "evil\n.pt",
    "~/.ssh/evil.bin",
]


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path, monkeypatch):
    """Uploads go under tmp_path/tmp so the tests can see everything that was created."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_size_under_and_at_the_limit_passes():
    check_upload_size(0, 1024)
    check_upload_size(1024, 1024)


def test_size_over_the_limit_is_one_clear_sentence():
    with pytest.raises(CheckpointError) as caught:
        check_upload_size(300 * 2**20, 200 * 2**20, name="big.pt")
    message = str(caught.value)
    assert message.startswith("big.pt is 300.0 MiB; uploads are limited to 200.0 MiB")
    assert message.endswith(".") and "\n" not in message


def test_upload_is_written_under_a_fixed_name_and_removed(private_tempdir):
    with save_upload(b"weights", ".PT") as upload:
        assert upload.path.name == "upload.pt"
        assert upload.path.parent == upload.directory
        assert upload.directory.parent == private_tempdir
        assert upload.path.read_bytes() == b"weights"
        assert stat.S_IMODE(upload.directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(upload.path.stat().st_mode) == 0o600
    assert not upload.directory.exists()
    assert list(private_tempdir.iterdir()) == []


def test_directory_is_removed_when_loading_fails(private_tempdir):
    with pytest.raises(CheckpointError), save_upload(b"\x00" * 64, "model.safetensors") as upload:
        load_model(upload.path)
    assert not upload.directory.exists()
    upload.cleanup()  # a second cleanup is harmless


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_user_name_is_never_a_path(name, tmp_path, private_tempdir, monkeypatch):
    workdir = tmp_path / "a" / "b" / "c"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    before = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(private_tempdir))
    with save_upload(b"junk", name) as upload:
        assert upload.path.parent == upload.directory
        assert upload.path.name.startswith("upload.")
        assert [p.name for p in upload.directory.iterdir()] == [upload.path.name]
        with pytest.raises(CheckpointError) as caught:
            load_model(upload.path)
        assert "evil" not in str(caught.value)
    after = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(private_tempdir))
    assert after == before
    assert list(private_tempdir.iterdir()) == []


@pytest.mark.parametrize("name", ["ckpt.zip", "ckpt.tar", "ckpt.tar.gz", "ckpt.tgz", ".zip"])
def test_archives_are_refused_with_a_sentence(name, private_tempdir):
    with pytest.raises(CheckpointError, match="not supported") as caught:
        save_upload(b"PK\x03\x04", name)
    assert name in str(caught.value) and "\n" not in str(caught.value)
    assert list(private_tempdir.iterdir()) == []


@pytest.mark.parametrize("name", ["model.exe", "noextension", "", "config.json/..", "x.pt/"])
def test_other_extensions_are_refused(name, private_tempdir):
    with pytest.raises(CheckpointError, match="unsupported extension"):
        save_upload(b"data", name)
    assert list(private_tempdir.iterdir()) == []


@pytest.mark.parametrize("name", [".safetensors", "x.pt", "X.PTH", "weights.bin", "config.json", "a.pkl"])
def test_supported_extensions(name):
    assert upload_suffix(name) == "." + name.rsplit(".", 1)[1].lower()


def test_size_limit_is_checked_before_anything_is_written(private_tempdir):
    with pytest.raises(CheckpointError, match="limited to 10 bytes"):
        save_upload(b"x" * 11, ".pt", limit=10)
    assert list(private_tempdir.iterdir()) == []
    with save_upload(b"x" * 10, ".pt", limit=10) as upload:
        assert upload.path.stat().st_size == 10


@pytest.mark.parametrize(
    ("raw", "also", "expected"),
    [
        ("out-shakespeare_char.v2", "", "out-shakespeare_char.v2"),
        ("../../etc/passwd", "", ".._.._etc_passwd"),
        ("a  b\n\tc", "", "a_b_c"),
        ("Zürich ∑ run", "", "Z_rich_run"),
        ("run, step 5/7: x", " ,/", "run, step 5/7_ x"),
        ("", "", ""),
    ],
)
def test_safe_name_keeps_letters_digits_and_the_named_punctuation(raw, also, expected):
    assert safe_name(raw, also=also) == expected
