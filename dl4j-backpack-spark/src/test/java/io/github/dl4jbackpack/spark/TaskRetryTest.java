// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spark;

import io.github.dl4jbackpack.extensions.DiagGGNExact;
import io.github.dl4jbackpack.extensions.Variance;
import org.apache.spark.SparkConf;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;

import java.util.Iterator;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * A task that fails after it has computed part of its partition is retried by Spark ({@code local[2,4]}: up to
 * four attempts), and the data set's quantities count the partition once: they equal those of a run without
 * failures.
 */
class TaskRetryTest {

    private static JavaSparkContext sc;

    @BeforeAll
    static void start() {
        Nd4j.setDefaultDataTypes(DataType.DOUBLE, DataType.DOUBLE);
        sc = new JavaSparkContext(new SparkConf().setMaster("local[2,4]").setAppName("TaskRetryTest")
                .set("spark.ui.enabled", "false").set("spark.driver.host", "127.0.0.1"));
    }

    @AfterAll
    static void stop() {
        sc.stop();
    }

    /** Failures thrown (local mode: the executors run in this JVM). */
    private static final AtomicInteger FAILURES = new AtomicInteger();

    /** The first attempt of partition 1 fails after its first record has gone through the network in batches. */
    private static Iterator<DataSet> failFirstAttemptOfPartitionOne(Integer partition, Iterator<DataSet> records) {
        if (partition != 1 || TaskContext.get().attemptNumber() > 0) {
            return records;
        }
        return new Iterator<>() {
            private int served;

            @Override
            public boolean hasNext() {
                if (served == 1) {
                    FAILURES.incrementAndGet();
                    throw new IllegalStateException("executor lost (simulated) after 1 record");
                }
                return records.hasNext();
            }

            @Override
            public DataSet next() {
                served++;
                return records.next();
            }
        };
    }

    @Test
    void aRetriedTaskCountsOnce() {
        MultiLayerNetwork net = SparkQuantitiesTest.network(DataType.DOUBLE);
        DataSet all = SparkQuantitiesTest.allExamples(DataType.DOUBLE);
        JavaRDD<DataSet> data = sc.parallelize(SparkQuantitiesTest.records(all), 3);
        DatasetQuantities clean = SparkQuantities.of(net).batchSize(2).extensions(new DiagGGNExact(), new Variance())
                .compute(data);
        JavaRDD<DataSet> failing = data.mapPartitionsWithIndex(TaskRetryTest::failFirstAttemptOfPartitionOne, true);
        DatasetQuantities retried = SparkQuantities.of(net).batchSize(2).extensions(new DiagGGNExact(), new Variance())
                .compute(failing);
        assertEquals(1, FAILURES.get(), "the first attempt failed once");
        assertEquals(clean.size(), retried.size());
        for (String layer : new String[] {"0", "1", "2"}) {
            assertEquals(clean.get(DiagGGNExact.class, layer, "W"), retried.get(DiagGGNExact.class, layer, "W"));
            assertEquals(clean.get(Variance.class, layer, "W"), retried.get(Variance.class, layer, "W"));
        }
        assertEquals(clean.gradientNoiseScale(), retried.gradientNoiseScale(), 0.0);
    }
}
