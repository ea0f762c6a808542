"""Apache Kafka 4.1.1 from Maven Central: KRaft nodes in combined mode (one, or a cluster of several), jars cached
per machine."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from events.topics import Replication, replication_for
from jobmeter.settings import cache_dir, state_dir
from services.devtools.stack.processes import HOST, StackError, file_lock, pick_port, run_logged, spawn, write_atomic
from services.devtools.stack.server import Server

if TYPE_CHECKING:
    from rich.console import Console

VERSION = "4.1.1"
LOG4J = "2.24.3"
HEALTH_TOPIC = "_jobmeter_health"

# kafka_2.13's POM brings slf4j-api only: the log4j binding and core are added so the broker logs to a file.
POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.jobmeter</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{LOG4J}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{LOG4J}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J2 = """status = warn
name = jobmeter-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
"""


class Kafka(Server):
    """One KRaft node, broker and controller both. Alone (`nodes == 1`) it is `kafka`, with the folders the stack has
    always used; in a cluster of `nodes` it is `kafka-N`, and every node votes in one controller quorum."""

    env_key = "KAFKA_BOOTSTRAP_SERVERS"
    role = "broker,controller"
    health_timeout = 120.0

    def __init__(self, node: int = 1, nodes: int = 1) -> None:
        if not 1 <= node <= nodes:
            raise ValueError(f"node {node} of a {nodes}-node cluster")
        self.node, self.nodes = node, nodes
        self.name = "kafka" if nodes == 1 else f"kafka-{node}"

    def peers(self) -> list[Kafka]:
        """Every node of this node's cluster, itself included, in node order."""
        return [Kafka(n, self.nodes) for n in range(1, self.nodes + 1)]

    @property
    def replication(self) -> Replication:
        """What the cluster's internal topics (offsets, transactions) get, by the rule jobmeter's own follow."""
        return replication_for(self.nodes)

    @property
    def marker(self) -> str:
        return str(self.conf_dir / "server.properties")

    @property
    def home(self) -> Path:
        return cache_dir() / f"kafka-{VERSION}"

    @property
    def conf_dir(self) -> Path:
        return state_dir() / self.name

    @property
    def data_dir(self) -> Path:
        return state_dir() / "data" / self.name

    @property
    def cluster_id_file(self) -> Path:
        return state_dir() / "data" / f"kafka-cluster-{self.nodes}.id"

    def install(self, console: Console | None) -> None:
        done = self.home / ".complete"
        if done.exists():
            return
        with file_lock(self.home / ".lock"):
            if done.exists():  # another clone finished while we waited for the lock
                return
            if shutil.which("mvn") is None or shutil.which("java") is None:
                raise StackError("Kafka needs `java` (17+) and `mvn` on PATH: apt-get install -y maven")
            # A marker written last means an interrupted download is redone from a clean folder.
            shutil.rmtree(self.home / "libs", ignore_errors=True)
            write_atomic(self.home / "pom.xml", POM)
            cmd = ["mvn", "-B", "dependency:copy-dependencies", "-DoutputDirectory=libs"]
            run_logged(cmd, self.home / "mvn.log", console, f"Fetching Kafka {VERSION} jars with Maven", cwd=self.home)
            if not any((self.home / "libs").glob(f"kafka_2.13-{VERSION}.jar")):
                raise StackError(f"Maven finished without kafka_2.13-{VERSION}.jar; read {self.home / 'mvn.log'}")
            done.write_text("ok\n")

    def address(self) -> str | None:
        port = self.saved_ports().get("broker")
        return f"{HOST}:{port}" if port else None

    def env_value(self) -> str | None:
        addresses = [peer.address() for peer in self.peers()]
        return ",".join(a for a in addresses if a) if all(addresses) else None

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java", "-Xms256m", "-Xmx512m", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.properties'}",
            "-cp", f"{self.home / 'libs'}/*", main, *args,
        ]  # fmt: skip

    def _write_config(self, ports: dict[int, dict[str, int]]) -> Path:
        broker, controller = ports[self.node]["broker"], ports[self.node]["controller"]
        internal = self.replication
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node),
            "controller.quorum.voters": ",".join(f"{n}@{HOST}:{p['controller']}" for n, p in sorted(ports.items())),
            "listeners": f"PLAINTEXT://{HOST}:{broker},CONTROLLER://{HOST}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{broker}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "6",
            "auto.create.topics.enable": "false",
            "default.replication.factor": str(internal.factor),
            "offsets.topic.replication.factor": str(internal.factor),
            "transaction.state.log.replication.factor": str(internal.factor),
            "transaction.state.log.min.isr": str(internal.min_insync),
            "share.coordinator.state.topic.replication.factor": str(internal.factor),
            "share.coordinator.state.topic.min.isr": str(internal.min_insync),
            "min.insync.replicas": str(internal.min_insync),
            "group.initial.rebalance.delay.ms": "0",
            # After a crash the controller refuses the new incarnation until the old session expires (9 s by
            # default); fault-injection tests crash Kafka often, and local nodes have no flaky network. The same
            # timeout fences a killed node of a cluster, which takes it out of every ISR: acks=all stalls that long.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
            # Test-sized: two cores are plenty for one node, and the defaults would claim more.
            "num.network.threads": "2",
            "num.io.threads": "2",
        }
        if self.nodes > 1:
            # A follower back from a crash catches up from a leader one of its peers is: a quick, small fetch.
            props["num.replica.fetchers"] = "1"
        path = self.conf_dir / "server.properties"
        write_atomic(path, "".join(f"{k}={v}\n" for k, v in props.items()))
        write_atomic(self.conf_dir / "log4j2.properties", LOG4J2)
        return path

    def _cluster_id(self) -> str:
        """One id for every node of the cluster, chosen at its first start (Kafka's form: 16 random bytes,
        URL-safe base64 without padding, never starting with a dash)."""
        with contextlib.suppress(OSError):
            if saved := self.cluster_id_file.read_text().strip():
                return saved
        while (chosen := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"):
            pass
        write_atomic(self.cluster_id_file, chosen + "\n")
        return chosen

    def _format_once(self, config: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        log = self.log_dir / "storage-format.log"
        with log.open("w") as out:
            fmt = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", self._cluster_id(), "-c", str(config)),
                stdout=out, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage failed; read {log}")

    def _ports(self) -> dict[int, dict[str, int]]:
        """node -> its broker and controller ports. Each node keeps its ports across restarts when it can; in a
        cluster, the first node to start picks them for every node, since each config names every voter."""
        saved = {peer.node: peer.saved_ports() for peer in self.peers()}
        taken = {port for node, ports in saved.items() if node != self.node for port in ports.values()}
        chosen: dict[int, dict[str, int]] = {}
        for node in sorted(saved, key=lambda n: n != self.node):  # this node first: it may keep its ports
            previous = saved[node]
            if node != self.node and {"broker", "controller"} <= previous.keys():
                chosen[node] = previous
                continue
            broker = pick_port(previous.get("broker"), taken)
            controller = pick_port(previous.get("controller"), taken | {broker})
            if self.nodes > 1 and previous.get("controller") not in (None, controller):
                raise StackError(
                    f"{self.name}'s controller port {previous['controller']} is taken by another program, and every "
                    "node's config names it; free it, or `jobmeter stack down --purge` and start afresh"
                )
            chosen[node] = {"broker": broker, "controller": controller}
            taken |= {broker, controller}
        for peer in self.peers():
            if peer.saved_ports() != chosen[peer.node]:
                peer.save_ports(chosen[peer.node])
        return chosen

    def launch(self) -> None:
        ports = self._ports()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config(ports)
        self._format_once(config)
        self.write_pid(spawn(self._java("kafka.Kafka", str(config)), self.log))

    async def check(self, address: str) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError, for_code

        # A plain connect first: while the port is closed, aiokafka would log an error per attempt.
        host, port = address.split(",")[0].rsplit(":", 1)
        _reader, writer = await asyncio.open_connection(host, int(port))
        writer.close()
        await writer.wait_closed()
        admin = AIOKafkaAdminClient(bootstrap_servers=address, request_timeout_ms=5000)
        await admin.start()
        try:
            if address == self.address() and self.nodes > 1:
                # A node that answers may still be fenced (not yet caught up with the quorum): it serves nothing.
                brokers = {b["node_id"] for b in (await admin.describe_cluster())["brokers"]}
                if self.node not in brokers:
                    raise StackError(f"node {self.node} is not among the cluster's live brokers {sorted(brokers)}")
            # Every node holds a copy: the probe still writes while any one node is down.
            copies = self.replication.factor
            health = NewTopic(HEALTH_TOPIC, 1, copies, topic_configs={"min.insync.replicas": "1"})
            response = await admin.create_topics([health])
            for _topic, code, *_ in response.topic_errors:
                if code and for_code(code) is not TopicAlreadyExistsError:
                    raise for_code(code)()
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=address, acks="all", request_timeout_ms=5000)
        await producer.start()
        try:
            await producer.send_and_wait(HEALTH_TOPIC, b"ok")
        finally:
            await producer.stop()

    def log_hint(self) -> str:
        return f"{self.log_dir / 'server.log'} (and {self.log})"
