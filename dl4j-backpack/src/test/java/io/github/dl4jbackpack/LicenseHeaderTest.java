// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The licence header policy (README, "Licence"): every Java source of every module starts with
 * the SPDX identifier of the Apache License 2.0 ({@code scripts/add-license-headers.sh} adds it).
 */
class LicenseHeaderTest {

    static final String HEADER = "// SPDX-License-Identifier: Apache-2.0";

    @Test
    void everyJavaSourceCarriesTheSpdxHeader() throws IOException {
        Path root = Path.of("..").toAbsolutePath().normalize();
        assertTrue(Files.exists(root.resolve("LICENSE")), "LICENSE at " + root);
        List<Path> sources;
        try (Stream<Path> files = Files.walk(root)) {
            sources = files.filter(p -> p.toString().endsWith(".java"))
                    .filter(p -> root.relativize(p).toString().contains("src/"))
                    .filter(p -> !root.relativize(p).toString().contains("target/"))
                    .collect(Collectors.toList());
        }
        assertTrue(sources.size() > 100, "sources found: " + sources.size());
        List<Path> missing = sources.stream().filter(p -> {
            try (Stream<String> lines = Files.lines(p)) {
                return !lines.findFirst().orElse("").equals(HEADER);
            } catch (IOException e) {
                return true;
            }
        }).collect(Collectors.toList());
        assertEquals(List.of(), missing, "sources without the licence header");
    }
}
