{
  description = "buildimage: container images from nixpkgs dockerTools arguments, built by one Rust program";

  # nixos-unstable rather than a release branch: the workspace needs the Rust of its
  # `rust-version` (Cargo.toml), newer than the rustc a NixOS release ships with when it
  # branches off. An older nixpkgs fails with a message naming both versions (see below).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems f;

      # Version and minimum Rust in one place: the workspace manifest.
      workspace = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package;

      # The `buildimage` binary, built with the given nixpkgs (this flake's own for
      # `packages`, the final one for `overlays.default`).
      buildimageFor =
        pkgs:
        let
          inherit (pkgs) lib;
        in
        assert lib.assertMsg (lib.versionAtLeast pkgs.rustc.version workspace.rust-version)
          "buildimage needs Rust ${workspace.rust-version} or newer (rust-version in Cargo.toml); this nixpkgs has ${pkgs.rustc.version}";
        pkgs.rustPlatform.buildRustPackage {
          pname = "buildimage";
          inherit (workspace) version;

          # Only what cargo reads: the manifests, the lock file and the workspace members
          # (`crates/*` and `xtask`, which cargo must see to load the workspace). Docs,
          # examples, fuzz/ and nix/ stay out, so editing them does not rebuild the binary.
          src = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.unions [
              ./Cargo.toml
              ./Cargo.lock
              ./crates
              ./xtask
            ];
          };
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [
            "-p"
            "buildimage-cli"
          ];
          # rusqlite's bundled SQLite, zstd and ring compile C code with stdenv's compiler;
          # nothing else is needed at build or run time.

          # The tests need root, a Docker daemon and Nix, none of which a Nix build has;
          # `cargo xtask ci` runs them.
          doCheck = false;

          meta = {
            description = "Build container images from nixpkgs dockerTools arguments, without a VM";
            license = with lib.licenses; [
              mit
              asl20
            ];
            mainProgram = "buildimage";
            platforms = lib.platforms.linux;
          };
        };
    in
    {
      packages = forAllSystems (
        system:
        let
          buildimage = buildimageFor nixpkgs.legacyPackages.${system};
        in
        {
          default = buildimage;
          inherit buildimage;
        }
      );

      # buildImage, buildLayeredImage, streamLayeredImage and the WithNixDb variants,
      # running this flake's buildimage.
      lib = forAllSystems (
        system:
        import ./nix {
          buildimage = self.packages.${system}.default;
          inherit system;
        }
      );

      # `buildimage` built with the nixpkgs the overlay is applied to, and the functions
      # running that build.
      overlays.default = final: prev: {
        buildimage = buildimageFor final;
        buildimageTools = import ./nix {
          inherit (final) buildimage;
          inherit (final.stdenv.hostPlatform) system;
        };
      };
    };
}
