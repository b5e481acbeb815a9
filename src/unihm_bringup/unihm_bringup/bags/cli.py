"""``unihm record``, ``unihm play`` and ``unihm replay`` (registered as unihm.commands)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register_record(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "record", help="record pipeline topics into an mcap rosbag2",
        description="Record the camera, the pipeline outputs, joint states, the Manipulate "
                    "action's feedback and status and the goal records (or --topics) into an "
                    "mcap rosbag2 until Ctrl-C, SIGTERM or --duration. The bag is complete "
                    "and readable however it stops. Prints the message counts as JSON lines.")
    parser.add_argument("--out", required=True, help="bag folder to create (must not exist)")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC[:TYPE]",
                        help="topics to record instead of the defaults; the type "
                             "(pkg/msg/Name) is taken from the graph when not given")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--progress", type=float, default=5.0, metavar="S",
                        help="print the message counts every S seconds (0: never)")

    def run(args: argparse.Namespace) -> int:
        from unihm_bringup.bags.recorder import parse_topics, record

        def ready(node: Any) -> None:
            print(json.dumps({"recording": args.out, "topics": node.subscribed,
                              "waiting_for": node.pending}), flush=True)

        def progress(counts: dict[str, int]) -> None:
            print(json.dumps({"recorded": counts}), flush=True)

        try:
            counts = record(args.out, parse_topics(args.topics), duration_s=args.duration,
                            storage=args.storage, progress_s=args.progress, on_ready=ready,
                            on_progress=progress)
        except (FileExistsError, ValueError) as e:
            print(f"unihm record: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"closed": args.out, "recorded": counts}), flush=True)
        return 0

    parser.set_defaults(func=run)


def _camera_topic_args(parser: argparse.ArgumentParser) -> None:
    from unihm_perception.bag_io import CAMERA_INFO_TOPIC, COLOR_TOPIC, DEPTH_TOPIC

    parser.add_argument("--color-topic", default=COLOR_TOPIC)
    parser.add_argument("--depth-topic", default=DEPTH_TOPIC)
    parser.add_argument("--camera-info-topic", default=CAMERA_INFO_TOPIC)


def _camera_topics(args: argparse.Namespace) -> Any:
    from unihm_perception.bag_io import BagTopics

    return BagTopics(color=args.color_topic, depth=args.depth_topic,
                     camera_info=args.camera_info_topic)


def register_play(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "play", help="play a bag's camera stream (color, depth, camera_info)",
        description="Publish the camera frames of a bag: 'hold' re-publishes the latest frame "
                    "at --rate Hz with fresh stamps (what perception needs), 'once' and 'loop' "
                    "publish every frame at its recorded time with its recorded stamp.")
    parser.add_argument("bag")
    parser.add_argument("--mode", choices=("hold", "once", "loop"), default="hold")
    parser.add_argument("--rate", type=float, default=10.0, metavar="HZ",
                        help="publishing rate of mode hold")
    parser.add_argument("--frame", type=int, default=None,
                        help="hold this frame (index; -1 = last) instead of following the bag")
    parser.add_argument("--duration", type=float, default=None, metavar="S")
    _camera_topic_args(parser)

    def run(args: argparse.Namespace) -> int:
        from unihm_bringup.bags.player import play

        try:
            published = play(args.bag, mode=args.mode, rate_hz=args.rate,
                             topics=_camera_topics(args), hold_frame=args.frame,
                             duration_s=args.duration)
        except (FileNotFoundError, ValueError, IndexError) as e:
            print(f"unihm play: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"published_frames": published}), flush=True)
        return 0

    parser.set_defaults(func=run)


def register_replay(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay", help="replay a bag's camera stream through the running pipeline and compare",
        description="Play the bag's camera stream, send Manipulate goals (--instruction, or the "
                    "goals recorded in the bag) to /unihm/manipulate, optionally record the "
                    "outputs (--out), and print one JSON line per goal comparing the new result "
                    "with the recorded one. Exit code 1 when a goal got no result or its "
                    "success differs from the recorded one.")
    parser.add_argument("bag")
    parser.add_argument("--instruction", default=None,
                        help="send this instead of the recorded goals")
    parser.add_argument("--hands", nargs="+", default=None, metavar="HAND",
                        help="hand ids (default: as recorded, or the server's default)")
    parser.add_argument("--execute", action="store_true",
                        help="also execute on the drivers (never implied by the recording)")
    parser.add_argument("--out", default=None, help="record the outputs to this new bag")
    parser.add_argument("--timeout", type=float, default=15.0, metavar="S",
                        help="wait at most S seconds for the Manipulate server")
    parser.add_argument("--goal-timeout", type=float, default=300.0, metavar="S",
                        help="cancel a goal without a result after S seconds")
    parser.add_argument("--rate", type=float, default=10.0, metavar="HZ",
                        help="rate at which the held camera frame is re-published")
    _camera_topic_args(parser)

    def run(args: argparse.Namespace) -> int:
        from unihm_bringup.bags.replay import ReplayError, exit_code, print_line, replay

        try:
            lines = replay(args.bag, instruction=args.instruction, hands=args.hands,
                           execute=args.execute, out=args.out, timeout_s=args.timeout,
                           goal_timeout_s=args.goal_timeout, hold_hz=args.rate,
                           topics=_camera_topics(args), emit=print_line)
        except (ReplayError, FileNotFoundError, FileExistsError, ValueError) as e:
            print(f"unihm replay: {e}", file=sys.stderr)
            return 2
        return exit_code(lines)

    parser.set_defaults(func=run)
