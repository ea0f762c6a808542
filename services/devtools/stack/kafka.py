"""Apache Kafka 4.1.1 from Maven Central: one KRaft node in combined mode, jars cached per machine."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

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
    name = "kafka"
    env_key = "KAFKA_BOOTSTRAP_SERVERS"
    health_timeout = 120.0

    @property
    def marker(self) -> str:
        return str(self.conf_dir / "server.properties")

    @property
    def home(self) -> Path:
        return cache_dir() / f"kafka-{VERSION}"

    @property
    def conf_dir(self) -> Path:
        return state_dir() / "kafka"

    @property
    def data_dir(self) -> Path:
        return state_dir() / "data" / "kafka"

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

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java", "-Xms256m", "-Xmx512m", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.properties'}",
            "-cp", f"{self.home / 'libs'}/*", main, *args,
        ]  # fmt: skip

    def _write_config(self, broker: int, controller: int) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{controller}",
            "listeners": f"PLAINTEXT://{HOST}:{broker},CONTROLLER://{HOST}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{broker}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "6",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a crash the controller refuses the new incarnation until the old session expires (9 s by
            # default); fault-injection tests crash Kafka often, and one local node has no flaky network.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
            # Test-sized: two cores are plenty for one node, and the defaults would claim more.
            "num.network.threads": "2",
            "num.io.threads": "2",
        }
        path = self.conf_dir / "server.properties"
        write_atomic(path, "".join(f"{k}={v}\n" for k, v in props.items()))
        write_atomic(self.conf_dir / "log4j2.properties", LOG4J2)
        return path

    def _format_once(self, config: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        log = self.log_dir / "storage-format.log"
        with log.open("w") as out:
            uuid = subprocess.run(
                self._java("kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True, check=False
            )
            out.write(uuid.stdout + uuid.stderr)
            cluster_id = uuid.stdout.strip().splitlines()[-1] if uuid.returncode == 0 and uuid.stdout else ""
            if not cluster_id:
                raise StackError(f"kafka-storage random-uuid failed; read {log}")
            fmt = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
                stdout=out, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage failed; read {log}")

    def launch(self) -> None:
        saved = self.saved_ports()
        broker = pick_port(saved.get("broker"))
        controller = pick_port(saved.get("controller"), taken={broker})
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config(broker, controller)
        self._format_once(config)
        self.save_ports({"broker": broker, "controller": controller})
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
            response = await admin.create_topics([NewTopic(HEALTH_TOPIC, 1, 1)])
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
