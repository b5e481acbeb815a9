"""The sim graph inside the calling process, for the demo, the benchmark and tests.

Same nodes and parameters as ``unihm run sim`` (:func:`unihm_bringup.run_cli.build_graph`),
spun on a multithreaded executor in a background thread, plus a Manipulate client. Nodes
still talk over DDS, exactly as separate processes would.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

EXECUTOR_THREADS = 16  # action servers block a thread for a whole goal


class InProcessGraph:
    def __init__(self, workdir: Path, *, bag: Path | None = None,
                 sets: list[str] | None = None, extra_nodes: Any = None,
                 isolate: bool = False) -> None:
        """``extra_nodes(graph) -> list[Node]`` adds nodes built after the graph's own."""
        os.environ.setdefault("MUJOCO_GL", "egl")
        if isolate:
            from unihm_core.testing import isolated_ros_environment

            os.environ.update(isolated_ros_environment())
        import rclpy

        from unihm_bringup.graph import build_node
        from unihm_bringup.manipulate_cli import ManipulateClient
        from unihm_bringup.run_cli import build_graph, render_sim_bag
        from unihm_core.process import limit_malloc_arenas, start_memory_trimmer
        from unihm_core.ros.executor import WaitingExecutor

        limit_malloc_arenas()
        start_memory_trimmer()
        workdir.mkdir(parents=True, exist_ok=True)
        self.bag = bag if bag is not None else render_sim_bag(workdir / "scene")
        rclpy.init()
        self.nodes = {}
        self.executor = WaitingExecutor(num_threads=EXECUTOR_THREADS)
        try:
            for spec in build_graph("sim", bag=str(self.bag), sets=sets):
                node = build_node(spec)
                self.nodes[node.get_name()] = node
            for node in (extra_nodes(self) if extra_nodes else []):
                self.nodes[node.get_name()] = node
        except BaseException:
            self._destroy()
            raise
        for node in self.nodes.values():
            self.executor.add_node(node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        self.client = ManipulateClient("unihm_inprocess_client")

    def __getitem__(self, name: str) -> Any:
        return self.nodes[name]

    def add_node(self, node: Any) -> None:
        self.nodes[node.get_name()] = node
        self.executor.add_node(node)

    def _destroy(self) -> None:
        import rclpy

        # stop the spin thread before destroying what it waits on (else the process aborts)
        self.executor.shutdown(timeout_sec=2.0)
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout=5.0)
        for node in self.nodes.values():
            node.destroy_node()
        rclpy.try_shutdown()

    def close(self) -> None:
        self.client.close()
        self._destroy()

    def __enter__(self) -> InProcessGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
