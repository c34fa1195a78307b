// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import io.github.dl4jbackpack.extensions.KroneckerFactors;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Kronecker factors with other values keep the parameter's arrangement (the product's flattening, a transposed
 * convolution's reordering included), factors survive Java serialization, and closed quantities and factors refuse
 * reads while copies read before stay valid.
 */
class KroneckerFactorsValuesTest {

    private static INDArray symmetric(int n, long seed) {
        Nd4j.getRandom().setSeed(seed + 1_000_003L);
        INDArray r = Nd4j.rand(DataType.DOUBLE, n, n);
        return r.add(r.transpose());
    }

    @Test
    void newValuesKeepTheArrangement() {
        INDArray a = symmetric(3, 1);
        INDArray b = symmetric(2, 2);
        INDArray a2 = symmetric(3, 3);
        INDArray b2 = symmetric(2, 4);
        KroneckerFactors[] templates = {KroneckerFactors.denseWeight(a, b), KroneckerFactors.convolutionWeight(b, a),
            KroneckerFactors.transposedConvolutionWeight(b, symmetric(4, 5), 2)};
        KroneckerFactors[] expected = {KroneckerFactors.denseWeight(a2, b2), KroneckerFactors.convolutionWeight(b2, a2),
            KroneckerFactors.transposedConvolutionWeight(b2, symmetric(4, 6), 2)};
        for (int i = 0; i < templates.length; i++) {
            KroneckerFactors changed = templates[i].withValues(expected[i].inputFactor().get(),
                    expected[i].outputFactor());
            assertEquals(expected[i].inputSideFirst(), changed.inputSideFirst());
            assertEquals(expected[i].toMatrix(), changed.toMatrix(), "arrangement " + i);
        }
        KroneckerFactors bias = KroneckerFactors.bias(b);
        assertEquals(b2, bias.withValues(null, b2).toMatrix());
        assertThrows(IllegalArgumentException.class, () -> bias.withValues(a, b2));
        assertThrows(IllegalArgumentException.class, () -> templates[0].withValues(null, b2));
        IllegalArgumentException shape = assertThrows(IllegalArgumentException.class,
                () -> templates[0].withValues(b2, b2));
        assertTrue(shape.getMessage().contains("shapes"), shape.getMessage());
    }

    @Test
    void closedQuantitiesAndFactorsRefuseReadsAndCopiesReadBeforeStayValid() {
        INDArray a = symmetric(3, 9);
        KroneckerFactors f = KroneckerFactors.denseWeight(a, symmetric(2, 10));
        java.util.Map<Class<?>, java.util.Map<String, java.util.Map<String, Object>>> values = java.util.Map.of(
                io.github.dl4jbackpack.extensions.KFLR.class, java.util.Map.of("0", java.util.Map.of("W", f)),
                io.github.dl4jbackpack.extensions.Variance.class, java.util.Map.of("0", java.util.Map.of("W",
                        a.dup())));
        Quantities q = new Quantities(1.0, 4, values);
        INDArray before = q.get(io.github.dl4jbackpack.extensions.Variance.class, "0", "W");
        INDArray factorBefore = f.inputFactor().get();
        q.close();
        q.close();
        assertEquals(a, before, "a copy read before close stays valid");
        assertEquals(a, factorBefore);
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> q.get(io.github.dl4jbackpack.extensions.Variance.class, "0", "W"));
        assertTrue(e.getMessage().contains("closed"), e.getMessage());
        assertThrows(IllegalStateException.class, f::outputFactor, "the factors inside were closed too");
    }

    @Test
    void factorsSurviveJavaSerialization() throws Exception {
        KroneckerFactors f = KroneckerFactors.transposedConvolutionWeight(symmetric(2, 7), symmetric(4, 8), 2);
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
            out.writeObject(f);
        }
        KroneckerFactors back;
        try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(bytes.toByteArray()))) {
            back = (KroneckerFactors) in.readObject();
        }
        assertEquals(f.toMatrix(), back.toMatrix());
        assertEquals(f.inputSideFirst(), back.inputSideFirst());
    }

    @Test
    void anInputFactorKeptAsItsSquareRootIsFormedWhenReadAndSurvivesSerializationAndNewValues() throws Exception {
        Nd4j.getRandom().setSeed(11);
        INDArray x = Nd4j.rand(DataType.DOUBLE, 2, 5).subi(0.5);
        INDArray r = x.div(2);
        INDArray b = symmetric(3, 12);
        INDArray a = x.transpose().mmul(x).divi(4);
        KroneckerFactors f = KroneckerFactors.denseWeightOfInputs(x, 4, b);
        assertEquals("KroneckerFactors[5×5 (rank ≤ 2) ⊗ 3×3]", f.toString());
        assertEquals(15, f.dimension());
        assertTrue(r.equalsWithEps(f.sqrtInputFactor().get(), 1e-15), "R = X/√N");
        assertTrue(a.equalsWithEps(f.inputFactor().get(), 1e-14));
        assertTrue(KroneckerFactors.denseWeight(a, b).toMatrix().equalsWithEps(f.toMatrix(), 1e-14));
        assertEquals(2, f.factors().size());
        assertTrue(f.inputSideFirst());
        // the square root is the factor's only when given: plain factors, biases and new values have none
        assertTrue(KroneckerFactors.denseWeight(a, b).sqrtInputFactor().isEmpty());
        assertTrue(KroneckerFactors.bias(b).sqrtInputFactor().isEmpty());
        KroneckerFactors changed = f.withValues(a.mul(2), b);
        assertTrue(changed.sqrtInputFactor().isEmpty());
        assertTrue(a.mul(2).equalsWithEps(changed.inputFactor().get(), 1e-14));
        assertThrows(IllegalArgumentException.class, () -> f.withValues(symmetric(4, 13), b));
        assertThrows(IllegalArgumentException.class, () -> KroneckerFactors.denseWeightOfInputs(
                Nd4j.rand(DataType.DOUBLE, 2, 5, 1), 4, b));
        assertThrows(IllegalArgumentException.class, () -> KroneckerFactors.denseWeightOfInputs(x, 0, b));
        // serialized before A is formed: formed from the square root on the other side
        KroneckerFactors fresh = KroneckerFactors.denseWeightOfInputs(x, 4, b);
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
            out.writeObject(fresh);
        }
        KroneckerFactors back;
        try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(bytes.toByteArray()))) {
            back = (KroneckerFactors) in.readObject();
        }
        assertTrue(r.equalsWithEps(back.sqrtInputFactor().get(), 1e-15));
        assertTrue(a.equalsWithEps(back.inputFactor().get(), 1e-14));
        f.close();
        assertThrows(IllegalStateException.class, f::sqrtInputFactor);
    }
}
