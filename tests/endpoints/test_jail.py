from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.ingest.endpoints.jail import Area, Jail, JailError, is_temp_name


@pytest.fixture
def jail(source_root: Path) -> Jail:
    j = Jail(source_root)
    j.ensure_folders()
    return j


@pytest.mark.parametrize("name", ["a.tmp", "a.PART", "a.csv.filepart", "x.writing", ".hidden"])
def test_temporary_names_are_recognised(name: str) -> None:
    assert is_temp_name(name)


@pytest.mark.parametrize("name", ["a.csv", "tmp.csv", "partial.xlsx"])
def test_final_names_are_not_temporary(name: str) -> None:
    assert not is_temp_name(name)


@pytest.mark.parametrize(
    ("path", "cwd", "expected"),
    [
        ("/", "/", "/"),
        ("inbox/a.csv", "/", "/inbox/a.csv"),
        ("a.csv", "/inbox", "/inbox/a.csv"),
        ("../results/r.csv", "/inbox", "/results/r.csv"),
        ("/../../../inbox/a.csv", "/", "/inbox/a.csv"),
        ("//inbox//a.csv", "/", "/inbox/a.csv"),
        ("", "/inbox", "/inbox"),
    ],
)
def test_paths_are_canonicalised_and_never_climb_above_the_root(
    jail: Jail, path: str, cwd: str, expected: str
) -> None:
    assert jail.resolve(path, cwd).virtual == expected


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../../etc/passwd", "/inbox/../../etc/passwd", "/.staging",
     "/.staging/x.upload", "/inbox/sub/a.csv", "/elsewhere", "/inbox/a\x00b", "/inbox/a\nb"],
)
def test_paths_outside_inbox_and_results_are_refused(jail: Jail, path: str) -> None:
    with pytest.raises(JailError):
        jail.resolve(path)


def test_targets_map_to_real_paths_inside_the_source_folder(jail: Jail, source_root: Path) -> None:
    t = jail.resolve("/inbox/a.csv")
    assert (t.area, t.name, t.real) == (Area.INBOX, "a.csv", source_root / "inbox" / "a.csv")
    assert jail.resolve("/results").area is Area.RESULTS
    assert jail.resolve("/").area is Area.ROOT


def test_a_symlink_inside_the_root_pointing_out_is_refused(
    jail: Jail, source_root: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    os.symlink(secret, source_root / "results" / "leak.txt")
    with pytest.raises(JailError):
        jail.resolve("/results/leak.txt")
    assert "leak.txt" not in jail.listing(jail.resolve("/results"))


def test_an_area_folder_that_is_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "inbox").mkdir()
    os.symlink(tmp_path / "outside", root / "results")
    jail = Jail(root)
    with pytest.raises(JailError):
        jail.resolve("/results")


def test_listings_show_the_two_areas_and_only_regular_files(jail: Jail, source_root: Path) -> None:
    (source_root / "inbox" / "a.tmp").write_text("x")
    (source_root / "inbox" / "sub").mkdir()
    (source_root / "results" / "r.csv").write_text("x")
    assert jail.listing(jail.resolve("/")) == ["inbox", "results"]
    assert jail.listing(jail.resolve("/inbox")) == ["a.tmp"]
    assert jail.listing(jail.resolve("/results")) == ["r.csv"]


def test_staging_files_are_private_and_hidden(jail: Jail) -> None:
    path, fd = jail.new_staging_file()
    os.close(fd)
    assert path.parent == jail.staging
    assert (path.stat().st_mode & 0o777) == 0o600
    assert ".staging" not in jail.listing(jail.resolve("/"))
