"""The explorer's Verify uploads: names that leave the temporary directory, zip bombs and non-runs are refused."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from nodes.explorer import uploads
from nodes.explorer.pages import e, json_block
from nodes.explorer.uploads import UploadError


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["../x.json", "a/../../x.json", "/etc/passwd", "C:/x.json", "..\\x.json", "", "a\x00b"])
def test_a_name_that_could_leave_the_upload_is_refused(tmp_path, name) -> None:
    with pytest.raises(UploadError):
        uploads.save_file(tmp_path, name, b"{}")
    assert list(tmp_path.iterdir()) == []


def test_plain_relative_names_land_inside_the_directory(tmp_path) -> None:
    path = uploads.save_file(tmp_path, "run/./guest/checkpoints/round-0001.json", b"{}")
    assert path == (tmp_path / "run" / "guest" / "checkpoints" / "round-0001.json").resolve()
    with pytest.raises(UploadError, match="given twice"):
        uploads.save_file(tmp_path, "run/guest/checkpoints/round-0001.json", b"{}")


def test_a_zip_slip_member_is_refused(tmp_path) -> None:
    with pytest.raises(UploadError, match="leaves the upload"):
        uploads.unpack_zip(tmp_path / "u", zip_of({"ok.json": b"{}", "../../evil.json": b"{}"}))
    assert not (tmp_path / "evil.json").exists()


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path) -> None:
    big = zip_of({"job.json": b"\0" * (uploads.MAX_UNPACKED_BYTES + 1)})
    with pytest.raises(UploadError, match="zip bomb"):
        uploads.unpack_zip(tmp_path, big)
    dense = zip_of({"job.json": b"\0" * (8 * 1024 * 1024)})  # under the total, but inflates ~1000x
    with pytest.raises(UploadError, match="zip bomb"):
        uploads.unpack_zip(tmp_path, dense)
    assert not any(tmp_path.rglob("job.json"))


def test_a_member_lying_about_its_size_is_cut_off(tmp_path) -> None:
    data = bytearray(zip_of({"a.json": b"x" * 5000}, zipfile.ZIP_STORED))
    # shrink the declared size in the central directory (the local header's is not read by zipfile)
    at = data.rfind(b"PK\x01\x02")
    data[at + 24:at + 28] = (100).to_bytes(4, "little")
    with pytest.raises(UploadError):
        uploads.unpack_zip(tmp_path, bytes(data))


def test_too_many_files_and_not_a_zip_are_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(uploads, "MAX_FILES", 3)
    with pytest.raises(UploadError, match="at most 3"):
        uploads.unpack_zip(tmp_path, zip_of({f"f{i}": b"" for i in range(4)}))
    with pytest.raises(UploadError, match="not a zip archive"):
        uploads.unpack_zip(tmp_path, b"PK\x03\x04 but not really")


def test_the_run_is_found_under_a_top_folder_or_refused(tmp_path) -> None:
    for role in ("guest", "host"):
        uploads.save_file(tmp_path, f"myrun/{role}/job.json", json.dumps({"role": role}).encode())
    assert uploads.run_root(tmp_path) == (tmp_path / "myrun").resolve()
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UploadError, match="not a run directory"):
        uploads.run_root(other)
    uploads.save_file(other, "a/guest/job.json", b"{}")
    uploads.save_file(other, "b/x/guest/job.json", b"{}")
    with pytest.raises(UploadError, match="more than one run"):
        uploads.run_root(other)


def test_text_and_chart_data_cannot_break_out_of_the_page() -> None:
    assert e('<script>alert(1)</script> "x"') == "&lt;script&gt;alert(1)&lt;/script&gt; &quot;x&quot;"
    block = json_block("d", {"name": "</script><script>alert(1)</script>"})
    inner = block.removeprefix('<script type="application/json" id="d">').removesuffix("</script>")
    assert "<" not in inner and json.loads(inner)["name"] == "</script><script>alert(1)</script>"


def test_uploads_stay_in_the_given_directory(tmp_path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    uploads.unpack_zip(root, zip_of({"run/guest/job.json": b"{}", "run/guest/rounds.jsonl": b""}))
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(root in p.parents for p in written)
    assert Path(uploads.run_root(root)).name == "guest"
