def test_local_driver_runs_the_throughput_collector(spark):
    management = spark.sparkContext._jvm.java.lang.management.ManagementFactory
    collectors = {bean.getName() for bean in management.getGarbageCollectorMXBeans()}
    assert collectors == {"PS Scavenge", "PS MarkSweep"}  # G1 would be "G1 Young Generation", ...
