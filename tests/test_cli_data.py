"""The data commands, driven through main(argv) as a user would."""

import json

import pytest

from pipeline.cli import main
from tests.helpers import corrupt, tone, truncate, write_audio, write_image


def test_every_command_has_help(capsys):
    for argv in (["--help"], ["data", "--help"], ["data", "build", "--help"], ["data", "describe", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
    assert "describe" in capsys.readouterr().out


def test_describe_names_every_broken_file(tmp_path, capsys):
    write_image(tmp_path / "good.png")
    corrupt(write_image(tmp_path / "bad.png"))
    truncate(write_audio(tmp_path / "cut.flac", tone(1.0, 16000), 16000), keep=0.01)
    write_audio(tmp_path / "ok.ogg", tone(0.3, 16000), 16000)
    (tmp_path / "manifest.csv").write_text(
        "item_id,split,text,image,audio\n"
        "a,train,a good one,good.png,ok.ogg\n"
        "b,train,a corrupt image,bad.png,\n"
        "c,dev,truncated audio,,cut.flac\n"
        "d,test,a missing file,gone.jpg,\n"
        "e,test,,,\n"
    )
    report_path = tmp_path / "report.json"
    code = main(["data", "describe", str(tmp_path), "--json", str(report_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "[unreadable_file] row 1 bad.png: cannot be decoded as image" in out
    assert "[unreadable_file] row 2 cut.flac: cannot be decoded as audio" in out
    assert "[missing_file] row 3 gone.jpg: image file not found" in out
    assert "[no_modality] row 4: no text, image or audio in this row" in out
    report = json.loads(report_path.read_text())
    assert report["counts"]["total"]["rows"] == 5 and report["counts"]["train"]["images"] == 2
    assert sorted(p["row"] for p in report["problems"]) == [1, 2, 3, 4]


def test_describe_clean_dataset_exit_zero(tiny_default_dataset, capsys):
    assert main(["data", "describe", str(tiny_default_dataset)]) == 0
    out = capsys.readouterr().out
    assert "format: embedded" in out and "problems: none" in out


def test_unusable_manifest_stops_with_a_clear_error(tmp_path, capsys):
    (tmp_path / "manifest.csv").write_text("id,caption,picture\n1,a cat,cat.jpg\n")
    assert main(["data", "describe", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        "unknown column(s) 'id' (did you mean 'item_id'?), 'caption' (did you mean 'text'?), 'picture' (did you mean 'image'?)"
        in err
    )
    assert "item_id, split, text, image, audio, label" in err


def test_build_refuses_to_overwrite_without_force(tiny_default_dataset, capsys):
    before = (tiny_default_dataset / "manifest.csv").stat().st_mtime_ns
    assert main(["data", "build", "--out", str(tiny_default_dataset)]) == 0
    assert "already exists" in capsys.readouterr().out
    assert (tiny_default_dataset / "manifest.csv").stat().st_mtime_ns == before


def test_build_bad_items_argument(tmp_path, capsys):
    assert main(["data", "build", "--out", str(tmp_path / "d"), "--items", "10,x"]) == 2
    assert "--items takes three whole numbers" in capsys.readouterr().err


def test_build_replaces_a_dataset_from_an_older_version(tmp_path, capsys):
    import json

    from pipeline.data.synthetic.build import DATASET_VERSION, is_current

    out = tmp_path / "default"
    out.mkdir()
    (out / "dataset.json").write_text(json.dumps({"format": "embedded-default", "version": DATASET_VERSION - 1}))
    assert not is_current(out)
    assert main(["data", "build", "--out", str(out), "--items", "6,4,4", "--no-speech", "--workers", "1"]) == 0
    assert f"at version {DATASET_VERSION - 1}, not {DATASET_VERSION}; rebuilding it" in capsys.readouterr().out
    assert is_current(out) and (out / "manifest.csv").exists()
