// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.privacy.accounting;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The error function family against reference values computed with mpmath 1.3.0 at 40 significant digits
 * ({@code mp.erfc}, {@code mp.erf}, {@code mp.ncdf} and their logarithms), printed to 20 digits: on both sides of the
 * hand-over between the series and the continued fraction, far in the tail where erfc underflows, and near 0 where
 * only a direct series keeps relative accuracy.
 */
class SpecialFunctionsTest {

    /** Relative tolerance: a few units in the last place (the continued fraction near its lower limit is the worst). */
    private static final double RELATIVE = 5e-15;

    /** {x, erfc(x), log erfc(x)} from mpmath. */
    private static final double[][] ERFC = {
        {-3.0, 1.9999779095030014146, 0.69313613525044681032},
        {-1.3, 1.9340079449406524459, 0.65959450505816227362},
        {-0.2, 1.2227025892104784541, 0.20106364578290631137},
        {-1e-5, 1.000011283791670579, 0.000011283728009080662698},
        {1e-8, 0.99999998871620832904, -1.1283791734617103315e-8},
        {0.1, 0.8875370839817151078, -0.11930497373739559833},
        {0.3, 0.67137324054087258381, -0.3984300514400852726},
        {0.5, 0.47950012218695346232, -0.73501112983708440303},
        {0.9, 0.20309178757716787148, -1.5940972465793173321},
        {1.0, 0.15729920705028513066, -1.8496055099332482486},
        {1.1, 0.11979493042591830023, -2.121973911175155823},
        {1.2, 0.089686021770364631634, -2.4114403551669295704},
        {1.249, 0.077336688684934000919, -2.5595868087579260791},
        {1.25, 0.077099871743541769863, -2.5626536619221257245},
        {1.3, 0.06599205505934755415, -2.7182209220903844811},
        {1.6, 0.023651616655355992226, -3.7443238088601259666},
        {2.0, 0.0046777349810472658379, -5.3649412646166375745},
        {3.0, 0.000022090496998585441373, -10.720363041981112568},
        {4.0, 1.5417257900280018852e-8, -17.987778312103006503},
        {5.0, 1.5374597944280348502e-12, -27.200889545537434422},
        {6.0, 2.1519736712498913117e-17, -38.377561173223388366},
        {8.0, 1.122429717298292708e-29, -66.65947197080516149},
        {10.0, 2.088487583762544757e-45, -102.87988902484488857},
        {15.0, 7.2129941724512066666e-100, -228.28262515380638614},
        {20.0, 5.3958656116079009289e-176, -403.56934333410423496},
        {26.0, 5.6631924088561428465e-296, -679.83119976319423026},
    };

    private static void assertRelative(double expected, double actual, double tolerance, String what) {
        assertTrue(Math.abs(actual - expected) <= tolerance * Math.abs(expected),
                what + ": expected " + expected + ", got " + actual + " (relative error "
                        + Math.abs(actual - expected) / Math.abs(expected) + ")");
    }

    @Test
    void erfcAndItsLogarithmMatchMpmath() {
        for (double[] row : ERFC) {
            assertRelative(row[1], SpecialFunctions.erfc(row[0]), RELATIVE, "erfc(" + row[0] + ")");
            assertRelative(row[2], SpecialFunctions.logErfc(row[0]), RELATIVE, "log erfc(" + row[0] + ")");
        }
    }

    @Test
    void logErfcStaysAccurateWhereErfcUnderflows() {
        // mpmath: log erfc(50), log erfc(100), log erfc(1000); erfc itself is below the smallest double.
        assertRelative(-2504.4845878484513719, SpecialFunctions.logErfc(50), RELATIVE, "log erfc(50)");
        assertRelative(-10005.177585122664333, SpecialFunctions.logErfc(100), RELATIVE, "log erfc(100)");
        assertRelative(-1000007.4801207219062, SpecialFunctions.logErfc(1000), RELATIVE, "log erfc(1000)");
        assertEquals(0.0, SpecialFunctions.erfc(50), 0.0);
        // Asymptotically log erfc(x) = −x² − log(x√π) + O(x⁻²).
        double x = 1e12;
        assertRelative(-x * x - Math.log(x * SpecialFunctions.SQRT_PI), SpecialFunctions.logErfc(x), 1e-15,
                "log erfc(1e12)");
    }

    @Test
    void erfIsRelativelyAccurateNearZero() {
        // mpmath: erf(1e-10) and erf(0.01).
        assertRelative(1.1283791670955125739e-10, SpecialFunctions.erf(1e-10), 2e-16, "erf(1e-10)");
        assertRelative(0.011283415555849616916, SpecialFunctions.erf(0.01), 2e-16, "erf(0.01)");
        assertRelative(-0.011283415555849616916, SpecialFunctions.erf(-0.01), 2e-16, "erf(-0.01)");
        assertEquals(0.0, SpecialFunctions.erf(0), 0.0);
        assertEquals(1.0, SpecialFunctions.erfc(0), 0.0);
    }

    @Test
    void logNormalDistributionFunctionMatchesMpmath() {
        // {x, log Φ(x)} from mpmath's ncdf: Φ(−40) = 3.6558935409150297037e-350 is below the doubles, Φ(3) is
        // within 0.00135 of 1.
        double[][] logPhi = {
            {-40, -804.60844201375378817},
            {-10, -53.231285150512470578},
            {-1, -1.8410216450092635058},
            {0.5, -0.36894641528865639307},
            {3, -0.0013508099647481937988},
        };
        for (double[] row : logPhi) {
            assertRelative(row[1], SpecialFunctions.logNormalCdf(row[0]), RELATIVE, "log Φ(" + row[0] + ")");
        }
        assertEquals(-SpecialFunctions.LN_2, SpecialFunctions.logNormalCdf(0), 1e-16);
    }

    @Test
    void scaledErfcMatchesItsDefinitionAndItsAsymptote() {
        // erfcx(x) = e^{x²} erfc(x), from the mpmath erfc values above where e^{x²} is exact enough.
        assertRelative(Math.exp(4.0) * 0.0046777349810472658379, SpecialFunctions.erfcx(2), 1e-15, "erfcx(2)");
        assertRelative(Math.exp(0.25) * 0.47950012218695346232, SpecialFunctions.erfcx(0.5), 1e-15, "erfcx(0.5)");
        // erfcx(x) = (1 − 1/(2x²) + 3/(4x⁴) − …) / (x√π)
        double x = 1e4;
        assertRelative((1 - 0.5 / (x * x)) / (x * SpecialFunctions.SQRT_PI), SpecialFunctions.erfcx(x), 1e-15,
                "erfcx(1e4)");
    }
}
