def test_local_driver_runs_the_throughput_collector(spark):
    management = spark.sparkContext._jvm.java.lang.management.ManagementFactory
    collectors = {bean.getName() for bean in management.getGarbageCollectorMXBeans()}
    assert collectors == {"PS Scavenge", "PS MarkSweep"}  # G1 would be "G1 Young Generation", ...


def test_local_driver_jit_compiles_only_hot_methods_late(spark):
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = set(runtime.getInputArguments())
    assert {"-XX:Tier4InvocationThreshold=50000", "-XX:Tier3InvocationThreshold=2000"} <= arguments
