// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack.spark;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The module is built on the core's public API only, and every source file carries the licence header. */
class ModuleBoundaryTest {

    @Test
    void noSourceUsesTheCoresInternalPackages() throws IOException {
        Path sources = Paths.get("src/main/java");
        assertTrue(Files.isDirectory(sources), "run from the module directory");
        List<Path> files;
        try (Stream<Path> walk = Files.walk(sources)) {
            files = walk.filter(p -> p.toString().endsWith(".java")).toList();
        }
        assertFalse(files.isEmpty());
        for (Path f : files) {
            String text = Files.readString(f);
            assertFalse(text.contains("io.github.dl4jbackpack.internal"), f + " uses the core's internals");
            assertEquals("// SPDX-License-Identifier: Apache-2.0", text.lines().findFirst().orElse(""), f + ": header");
        }
    }
}
