// SPDX-License-Identifier: Apache-2.0
package io.github.dl4jbackpack;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The layering of the core's packages, read from the sources: the public API never reaches into
 * {@code internal} through a cycle, {@code extensions} and {@code spi} (what applications and
 * extension authors compile against) depend on no internals, and the package graph is acyclic.
 */
class PackageDependenciesTest {

    private static final String ROOT = "io.github.dl4jbackpack";
    private static final Pattern IMPORT = Pattern.compile("^import (?:static )?(io\\.github\\.dl4jbackpack[\\w.]*)\\.[A-Za-z_]\\w*(?:\\.\\*)?;",
            Pattern.MULTILINE);
    private static final Pattern QUALIFIED = Pattern.compile("\\b(io\\.github\\.dl4jbackpack(?:\\.[a-z]\\w*)*)\\.[A-Z]");

    /** @return package → the library packages its main sources refer to in code (imports, qualified names) */
    static Map<String, Set<String>> dependencies() throws IOException {
        Map<String, Set<String>> deps = new TreeMap<>();
        Path main = Path.of("src/main/java");
        try (Stream<Path> files = Files.walk(main)) {
            for (Path f : (Iterable<Path>) files.filter(p -> p.toString().endsWith(".java"))::iterator) {
                String pkg = main.relativize(f.getParent()).toString().replace('/', '.');
                // comments (Javadoc links) are no dependencies
                String source = Files.readString(f).replaceAll("(?s)/\\*.*?\\*/", "").replaceAll("//[^\n]*", "");
                Set<String> out = deps.computeIfAbsent(pkg, k -> new TreeSet<>());
                for (Pattern p : List.of(IMPORT, QUALIFIED)) {
                    Matcher m = p.matcher(source);
                    while (m.find()) {
                        String target = m.group(1);
                        if (!target.equals(pkg) && deps.containsKey(pkg) && target.startsWith(ROOT)) {
                            out.add(target);
                        }
                    }
                }
            }
        }
        return deps;
    }

    @Test
    void publicPackagesDoNotDependOnInternalsAndThereIsNoCycle() throws IOException {
        Map<String, Set<String>> deps = dependencies();
        assertTrue(deps.keySet().containsAll(List.of(ROOT, ROOT + ".extensions", ROOT + ".spi", ROOT + ".internal")),
                "packages found: " + deps.keySet());
        for (Map.Entry<String, Set<String>> e : deps.entrySet()) {
            String pkg = e.getKey();
            for (String target : e.getValue()) {
                if (pkg.startsWith(ROOT + ".internal")) {
                    assertFalse(target.equals(ROOT) || target.startsWith(ROOT + ".spi"),
                            pkg + " must not depend on the public " + target);
                }
                if (pkg.equals(ROOT + ".extensions")) {
                    assertTrue(false, "extensions must depend on no other package of the library: " + target);
                }
                if (pkg.equals(ROOT + ".spi")) {
                    assertEquals(ROOT + ".extensions", target, "spi may depend on extensions only");
                }
            }
        }
        List<String> cycle = cycle(deps);
        assertTrue(cycle.isEmpty(), "package cycle: " + cycle);
    }

    /** @return one cycle of the graph, or empty */
    static List<String> cycle(Map<String, Set<String>> deps) {
        Map<String, Integer> state = new TreeMap<>();
        for (String start : deps.keySet()) {
            List<String> path = new ArrayList<>();
            if (visit(start, deps, state, path)) {
                return path;
            }
        }
        return List.of();
    }

    private static boolean visit(String node, Map<String, Set<String>> deps, Map<String, Integer> state,
                                 List<String> path) {
        Integer s = state.get(node);
        if (s != null && s == 2) {
            return false;
        }
        path.add(node);
        if (s != null && s == 1) {
            return true;
        }
        state.put(node, 1);
        for (String next : deps.getOrDefault(node, Set.of())) {
            if (visit(next, deps, state, path)) {
                return true;
            }
        }
        state.put(node, 2);
        path.remove(path.size() - 1);
        return false;
    }
}
