"""The `fer-perception` command line: help lists the subcommands, info reports versions and decoders."""

import json
import subprocess
import sys

import pytest

from fer_perception import cli


def test_help_lists_subcommands(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "fer-perception demo" in out and "info" in out


def test_every_subcommand_has_help_with_examples(capsys):
    parser = cli.build_parser()
    names = [a for a in parser._subparsers._group_actions[0].choices]  # noqa: SLF001 - argparse has no API
    assert "info" in names
    for name in names:
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: fer-perception " + name)


def test_info_json_reports_decoders(capsys):
    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "dv_ros2_msgs/msg/EventArray" in info["event_message_types"]
    assert "evt3" in info["event_packet_encodings"]
    assert info["libraries"]["numpy"][0].isdigit()
    assert info["device"]
    from fer_perception.runtime import digit_conv, spike_kernels

    assert info["cpu_int8_digits"] == {"onednn_int8_ops": digit_conv.available(),
                                       "int8_dot_product_cpu": digit_conv.has_int8_dot_product(),
                                       "numba_spike_kernels": spike_kernels.available()}


def test_console_script_runs(tmp_path):
    # cwd outside the repository: `python -m` puts the cwd first on sys.path, and the repository root holds
    # the ROS package folder `fer_perception/`, which would shadow the installed Python package.
    out = subprocess.run([sys.executable, "-m", "fer_perception.cli", "--version"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0 and "fer-perception" in out.stdout
